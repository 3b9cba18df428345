"""Prediction heads shared by every world model: reward (ensemble, two-hot), response summary, and the
effect of one edit (ensemble).

Reward uses the DreamerV3 recipe (Hafner et al., 2023): a categorical over bins spaced evenly in
symlog space, trained with a two-hot target; the prediction is the expected value. An ensemble of
independently initialised reward heads, each seeing a bootstrap mask of the batch, gives the
disagreement that the planner penalises as uncertainty (as in MBPO / PETS ensembles).

The effect head answers the search's own question, "what will this edit change?", directly from the
parent's and the child's features: the change of accuracy and of the dense reward, per ensemble member
(deep ensembles, Lakshminarayanan et al., 2017), so that siblings of one parent are ranked on one
scale and the members' spread is the uncertainty of the change itself rather than of two rewards.
"""

from __future__ import annotations

import torch
from torch import nn

from tap.models.layers import mlp


def symlog(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


class TwoHot(nn.Module):
    """Encode scalars as two-hot vectors over ``bins`` points evenly spaced in symlog space and back.

    Args:
        bins: number of bins.
        low: lowest bin, in symlog space.
        high: highest bin, in symlog space.
    """

    def __init__(self, bins: int = 41, low: float = -1.0, high: float = 1.0) -> None:
        super().__init__()
        if bins < 2 or low >= high:
            raise ValueError(f"need bins >= 2 and low < high, got bins={bins}, low={low}, high={high}.")
        self.register_buffer("points", torch.linspace(low, high, bins), persistent=False)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(...,) scalars -> (..., bins) two-hot targets (mass split between the two nearest bins)."""
        y = symlog(x).clamp(self.points[0], self.points[-1])
        idx = torch.bucketize(y, self.points).clamp(1, len(self.points) - 1)
        lo, hi = self.points[idx - 1], self.points[idx]
        w_hi = ((y - lo) / (hi - lo)).clamp(0, 1)
        out = torch.zeros(*y.shape, len(self.points), device=y.device, dtype=y.dtype)
        out.scatter_(-1, (idx - 1).unsqueeze(-1), (1 - w_hi).unsqueeze(-1))
        out.scatter_add_(-1, idx.unsqueeze(-1), w_hi.unsqueeze(-1))
        return out

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """(..., bins) logits -> (...,) expected value, back in the original scale."""
        return symexp((logits.softmax(-1) * self.points).sum(-1))


class RewardEnsemble(nn.Module):
    """K two-hot reward heads on the same features.

    Args:
        feature_dim: input size.
        hidden_dim: MLP width.
        members: ensemble size K.
        bins: two-hot bins.
    """

    def __init__(self, feature_dim: int, hidden_dim: int = 256, members: int = 5, bins: int = 41) -> None:
        super().__init__()
        self.codec = TwoHot(bins)
        self.members = nn.ModuleList(mlp(feature_dim, hidden_dim, bins) for _ in range(members))
        for m in self.members:  # DreamerV3: zero-init the output layer so early predictions are neutral
            nn.init.zeros_(m[-1].weight)
            nn.init.zeros_(m[-1].bias)

    def logits(self, feat: torch.Tensor) -> torch.Tensor:
        """(..., F) -> (K, ..., bins)."""
        return torch.stack([m(feat) for m in self.members])

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., F) -> mean reward (...,) and ensemble std (...,)."""
        values = self.codec.decode(self.logits(feat))  # (K, ...)
        return values.mean(0), values.std(0, unbiased=False)

    def loss(self, feat: torch.Tensor, target: torch.Tensor, bootstrap: torch.Tensor | None = None) -> torch.Tensor:
        """Two-hot cross-entropy per element (...,), averaged over members (each with its own mask).

        Args:
            feat: (..., F) features.
            target: (...,) rewards.
            bootstrap: (K, ...) 0/1 weights, one mask per member; None = all ones.
        """
        logp = self.logits(feat).log_softmax(-1)  # (K, ..., bins)
        ce = -(self.codec.encode(target).unsqueeze(0) * logp).sum(-1)  # (K, ...)
        if bootstrap is None:
            return ce.mean(0)
        return (ce * bootstrap).sum(0) / bootstrap.sum(0).clamp_min(1.0)


EFFECTS: tuple[str, ...] = ("accuracy", "dense")  # what the effect head predicts the change of, in order


class EffectEnsemble(nn.Module):
    """K heads ``[f_parent, f_child - f_parent, extra] -> (Δaccuracy, Δdense)``.

    Args:
        feature_dim: state feature size.
        hidden_dim: MLP width.
        members: ensemble size K.
        extra_dim: size of ``extra``, what is known of the edit beside the two states (e.g. the relevance
            inputs of ``WorldModel(relevance=True)``); 0: none.
    """

    def __init__(self, feature_dim: int, hidden_dim: int = 256, members: int = 5, extra_dim: int = 0) -> None:
        super().__init__()
        self.extra_dim = extra_dim
        self.members = nn.ModuleList(mlp(2 * feature_dim + extra_dim, hidden_dim, len(EFFECTS))
                                     for _ in range(members))

    def all(self, parent: torch.Tensor, child: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """parent, child (..., F), extra (..., extra_dim) -> (K, ..., 2) per-member predicted changes."""
        if (extra is None) != (self.extra_dim == 0) or (extra is not None and extra.shape[-1] != self.extra_dim):
            got = "none" if extra is None else f"{extra.shape[-1]} numbers"
            raise ValueError(f"this effect head reads {self.extra_dim} extra numbers per edit, got {got}.")
        parts = [parent, child - parent] + ([] if extra is None else [extra.to(parent)])
        x = torch.cat(parts, -1)
        return torch.stack([m(x) for m in self.members])

    def forward(self, parent: torch.Tensor, child: torch.Tensor,
                extra: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> mean (..., 2) and ensemble std (..., 2) of the predicted change."""
        values = self.all(parent, child, extra)
        return values.mean(0), values.std(0, unbiased=False)

    def loss(self, parent: torch.Tensor, child: torch.Tensor, target: torch.Tensor,
             bootstrap: torch.Tensor | None = None, extra: torch.Tensor | None = None) -> torch.Tensor:
        """Squared error per element (...,), summed over the two changes and averaged over members
        (each with its own 0/1 mask ``bootstrap`` (K, ...); None = all ones). target (..., 2).
        """
        se = (self.all(parent, child, extra) - target.unsqueeze(0)).pow(2).sum(-1)  # (K, ...)
        if bootstrap is None:
            return se.mean(0)
        return (se * bootstrap).sum(0) / bootstrap.sum(0).clamp_min(1.0)


class Heads(nn.Module):
    """What a world model reads out of its state features (the predicted latents live in the state).

    - ``reward`` / ``uncertainty``: ensemble mean and spread of the predicted reward;
    - ``response``: the response summary (accuracy, dense, compliance, answer entropy, majority share);
    - ``effect``: the change one edit makes (``EffectEnsemble``), from the parent's and child's features.

    Args:
        feature_dim: state feature size.
        response_dim: response summary size.
        hidden_dim: MLP width.
        members: reward ensemble size.
        bins: two-hot bins.
        effect_extra: numbers per edit the effect head reads beside the states (``EffectEnsemble.extra_dim``).
    """

    def __init__(self, feature_dim: int, response_dim: int = 5, hidden_dim: int = 256, members: int = 5,
                 bins: int = 41, effect_extra: int = 0) -> None:
        super().__init__()
        self.reward = RewardEnsemble(feature_dim, hidden_dim, members, bins)
        self.response = mlp(feature_dim, hidden_dim, response_dim)
        self.effect = EffectEnsemble(feature_dim, hidden_dim, members, effect_extra)

    def predict_response(self, feat: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.response(feat))
