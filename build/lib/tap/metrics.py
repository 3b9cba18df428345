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
