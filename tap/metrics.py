"""Metrics for world models (``torchmetrics``): rank agreement of predictions with what the LLM did."""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.functional import spearman_corrcoef
from torchmetrics.utilities import dim_zero_cat


class GroupedRankAgreement(Metric):
    """Spearman correlation and mean absolute error of predictions vs targets, overall and per group
    (e.g. per task: pooled correlations across tasks can hide a model that only tells tasks apart).

    ``compute()`` returns ``{"spearman", "mae", "n", "spearman/<group>", "mae/<group>"}``; a group
    with fewer than 3 points or a constant side gets NaN Spearman.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")
        self.add_state("group", default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, target: torch.Tensor, group: torch.Tensor) -> None:
        """preds, target (N,) float; group (N,) long."""
        self.preds.append(preds.detach().float().flatten())
        self.target.append(target.detach().float().flatten())
        self.group.append(group.detach().long().flatten())

    @staticmethod
    def _spearman(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if p.numel() < 3 or p.std() == 0 or t.std() == 0:
            return torch.tensor(float("nan"))
        return spearman_corrcoef(p, t)

    def compute(self) -> dict[str, torch.Tensor]:
        if not self.preds:
            return {}
        p, t, g = dim_zero_cat(self.preds), dim_zero_cat(self.target), dim_zero_cat(self.group)
        out = {"spearman": self._spearman(p, t), "mae": (p - t).abs().mean(), "n": torch.tensor(float(p.numel()))}
        for gid in g.unique().tolist():
            sel = g == gid
            out[f"spearman/{gid}"] = self._spearman(p[sel], t[sel])
            out[f"mae/{gid}"] = (p[sel] - t[sel]).abs().mean()
        return out


class SelectionGain(Metric):
    """How much better the model's top-1 sibling is than a random sibling, relative to an oracle that
    picks on an independent real evaluation.

    Each sibling has a prediction, a measured delta ``delta_eval`` (the held evaluation that judges every
    pick) and a delta from an independent evaluation ``delta_oracle`` (e.g. the other split half). Per
    group: ``gain = delta_eval[pick] - mean(delta_eval)``; the model picks ``argmax pred``, the oracle
    ``argmax delta_oracle``. ``compute()`` returns ``{"gain": mean model gain / mean oracle gain,
    "model", "oracle", "groups"}``: 1 is as good as a second real evaluation, 0 is random, below 0 worse.
    Ties in a pick go to the first sibling of the group.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("preds", "delta_eval", "delta_oracle", "group"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, delta_eval: torch.Tensor, delta_oracle: torch.Tensor,
               group: torch.Tensor) -> None:
        """All (N,); group (N,) long, the sibling group of each row."""
        self.preds.append(preds.detach().float().flatten())
        self.delta_eval.append(delta_eval.detach().float().flatten())
        self.delta_oracle.append(delta_oracle.detach().float().flatten())
        self.group.append(group.detach().long().flatten())

    def compute(self) -> dict[str, torch.Tensor]:
        if not self.preds:
            return {}
        p, d, o, g = (dim_zero_cat(x) for x in (self.preds, self.delta_eval, self.delta_oracle, self.group))
        model, oracle = [], []
        for gid in g.unique().tolist():
            sel = g == gid
            if sel.sum() < 2:
                continue
            dg = d[sel]
            model.append(dg[int(torch.argmax(p[sel]))] - dg.mean())
            oracle.append(dg[int(torch.argmax(o[sel]))] - dg.mean())
        if not model:
            return {}
        m, o_ = torch.stack(model).mean(), torch.stack(oracle).mean()
        gain = m / o_ if o_.abs() > 1e-12 else torch.tensor(float("nan"))
        return {"gain": gain, "model": m, "oracle": o_, "groups": torch.tensor(float(len(model)))}
