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
    "model", "oracle", "groups"}``, and the same with ``/<task>`` for each task id given to ``update``:
    1 is as good as a second real evaluation, 0 is random, below 0 worse. A pick tied between siblings
    counts as their mean ``delta_eval`` (the expected value of breaking the tie at random), for the model
    and the oracle alike: a scorer that ties siblings (the operation prior ties every sibling of one
    operation) is then judged on what it knows, not on the order the siblings were listed in.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("preds", "delta_eval", "delta_oracle", "group", "task"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, delta_eval: torch.Tensor, delta_oracle: torch.Tensor,
               group: torch.Tensor, task: torch.Tensor | None = None) -> None:
        """All (N,); group (N,) long, the sibling group of each row (unique across updates); task (N,)
        long, optional, the task of each row (for per-task results).
        """
        self.preds.append(preds.detach().float().flatten())
        self.delta_eval.append(delta_eval.detach().float().flatten())
        self.delta_oracle.append(delta_oracle.detach().float().flatten())
        self.group.append(group.detach().long().flatten())
        self.task.append((torch.zeros_like(group) if task is None else task).detach().long().flatten())

    @staticmethod
    def pick(score: torch.Tensor, judged: torch.Tensor) -> torch.Tensor:
        """The judged delta of the top-scored sibling; a tie at the top counts as the tied siblings' mean."""
        return judged[score == score.max()].mean()

    @staticmethod
    def group_gains(p: torch.Tensor, d: torch.Tensor, o: torch.Tensor,
                    g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per group of at least two siblings, in ``g.unique()`` order: the model's and the oracle's gain
        (G,), (G,) over the group mean of ``d``.
        """
        model, oracle = [], []
        for gid in g.unique().tolist():
            sel = g == gid
            if sel.sum() < 2:
                continue
            dg = d[sel]
            model.append(SelectionGain.pick(p[sel], dg) - dg.mean())
            oracle.append(SelectionGain.pick(o[sel], dg) - dg.mean())
        if not model:
            return torch.empty(0), torch.empty(0)
        return torch.stack(model), torch.stack(oracle)

    @staticmethod
    def _gains(p: torch.Tensor, d: torch.Tensor, o: torch.Tensor, g: torch.Tensor) -> dict[str, torch.Tensor]:
        model, oracle = SelectionGain.group_gains(p, d, o, g)
        if not len(model):
            return {}
        m, o_ = model.mean(), oracle.mean()
        gain = m / o_ if o_.abs() > 1e-12 else torch.tensor(float("nan"))
        return {"gain": gain, "model": m, "oracle": o_, "groups": torch.tensor(float(len(model)))}

    def compute(self) -> dict[str, torch.Tensor]:
        if not self.preds:
            return {}
        p, d, o, g, t = (dim_zero_cat(x) for x in (self.preds, self.delta_eval, self.delta_oracle, self.group,
                                                     self.task))
        out = self._gains(p, d, o, g)
        if out and t.unique().numel() > 1:
            for tid in t.unique().tolist():
                sel = t == tid
                out.update({f"{k}/{tid}": v for k, v in self._gains(p[sel], d[sel], o[sel], g[sel]).items()})
        return out


class SiblingRankAgreement(Metric):
    """Spearman correlation of predicted and measured deltas *within* each sibling group (the order a
    search needs), averaged over groups, overall and per task. A group whose measured deltas are all
    equal has no order to agree with and is skipped (``groups`` counts the rest).
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("preds", "target", "group", "task"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, target: torch.Tensor, group: torch.Tensor, task: torch.Tensor) -> None:
        """All (N,); group (N,) long, unique across updates; task (N,) long."""
        self.preds.append(preds.detach().float().flatten())
        self.target.append(target.detach().float().flatten())
        self.group.append(group.detach().long().flatten())
        self.task.append(task.detach().long().flatten())

    @staticmethod
    def group_rhos(p: torch.Tensor, t: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Each group's Spearman of ``p`` with ``t`` (all (N,)), in ``g.unique()`` order (G,): NaN for a group
        with fewer than two members or equal targets (no order to agree with), 0 for a constant score.
        """
        rhos = []
        for gid in g.unique().tolist():
            sel = g == gid
            if sel.sum() < 2 or t[sel].std() == 0:
                rhos.append(torch.tensor(float("nan")))
            elif p[sel].std() == 0:
                rhos.append(torch.tensor(0.0))
            else:
                rhos.append(spearman_corrcoef(p[sel].float(), t[sel].float()))
        return torch.stack(rhos) if rhos else torch.zeros(0)

    @classmethod
    def _mean_rho(cls, p: torch.Tensor, t: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, int]:
        rhos = cls.group_rhos(p, t, g)
        rhos = rhos[~rhos.isnan()]
        if not len(rhos):
            return torch.tensor(float("nan")), 0
        return rhos.mean(), len(rhos)

    def compute(self) -> dict[str, torch.Tensor]:
        if not self.preds:
            return {}
        p, t, g, k = (dim_zero_cat(x) for x in (self.preds, self.target, self.group, self.task))
        rho, n = self._mean_rho(p, t, g)
        out = {"spearman": rho, "groups": torch.tensor(float(n))}
        for tid in k.unique().tolist():
            sel = k == tid
            out[f"spearman/{tid}"] = self._mean_rho(p[sel], t[sel], g[sel])[0]
        return out


#: the standard normal quantile of a central interval of ``coverage`` (0.8 -> 1.2816)
def normal_quantile(coverage: float) -> float:
    return float(torch.special.ndtri(torch.tensor(0.5 + coverage / 2, dtype=torch.float64)))


class IntervalCalibration(Metric):
    """Does a predictive interval mean what it says? For predictions ``mean ± z * scale * std`` with
    ``z`` the normal quantile of ``coverage``: the share of outcomes inside (``coverage``; well
    calibrated = the nominal level) and the Spearman correlation of ``std`` with the absolute error
    (``spearman``: does more uncertainty go with larger errors?), overall and per task.
    ``conformal_scale()`` is the ``scale`` that would have covered exactly the nominal share here
    (split-conformal calibration, to be fitted on one split and used on another).

    Args:
        coverage: nominal coverage of the interval (0.8: the 80 % interval).
    """

    full_state_update = False

    def __init__(self, coverage: float = 0.8) -> None:
        super().__init__(compute_with_cache=False)  # compute(scale) differs by scale
        if not 0 < coverage < 1:
            raise ValueError(f"coverage must be in (0, 1), got {coverage}.")
        self.nominal, self.z = coverage, normal_quantile(coverage)
        for name in ("mean", "std", "target", "task"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, mean: torch.Tensor, std: torch.Tensor, target: torch.Tensor, task: torch.Tensor) -> None:
        """All (N,): predicted mean and std, the measured outcome, the task id."""
        self.mean.append(mean.detach().float().flatten())
        self.std.append(std.detach().float().flatten())
        self.target.append(target.detach().float().flatten())
        self.task.append(task.detach().long().flatten())

    def _cat(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m, s, t, k = (dim_zero_cat(x) for x in (self.mean, self.std, self.target, self.task))
        return (m - t).abs(), s.clamp_min(1e-8), k

    def conformal_scale(self) -> float:
        """The scale whose interval covers ``coverage`` of what was seen (1.0 if nothing was)."""
        if not self.mean:
            return 1.0
        err, std, _ = self._cat()
        return float(torch.quantile(err / std, self.nominal) / self.z)

    @staticmethod
    def _stats(err: torch.Tensor, std: torch.Tensor, half: torch.Tensor) -> dict[str, torch.Tensor]:
        rho = (spearman_corrcoef(std, err) if err.numel() >= 3 and std.std() > 0 and err.std() > 0
               else torch.tensor(float("nan")))
        return {"coverage": (err <= half).float().mean(), "spearman": rho, "width": 2 * half.mean()}

    def compute(self, scale: float = 1.0) -> dict[str, torch.Tensor]:
        """Statistics of the interval ``mean ± z * scale * std``."""
        if not self.mean:
            return {}
        err, std, k = self._cat()
        half = self.z * scale * std
        out = self._stats(err, std, half)
        for tid in k.unique().tolist():
            sel = k == tid
            out.update({f"{key}/{tid}": v for key, v in self._stats(err[sel], std[sel], half[sel]).items()})
        return out
