"""Online adaptation of a ranker to the task at hand: a Bayesian correction per edit operation.

A meta-trained ranker (the world model, or the non-learned operation prior) predicts each candidate's
accuracy change from what held across the training tasks. On a new task some operations help more or
less than that. Every candidate the search verifies (at whatever rung of the successive halving) is a
paired measurement of its change against the incumbent on the same examples, so its residual
(measured minus predicted change) says how this task departs from the ranker, per operation.

The correction is Bayesian linear regression of those residuals on the candidate's operation counts
(``phi``: how many edits of each operation it makes, so a two-edit plan adds its two operations):

    residual = phi . w + noise,   w ~ N(0, tau^2 I),   noise ~ N(0, s^2 / n)

where ``n`` is the number of examples it was measured on and ``s^2`` the variance of the per-example
paired differences (discordant examples), floored at ``1 / n``. The posterior mean ``phi . E[w]`` is
added to every later candidate's predicted change: with no measurement it is 0 (the ranker as
meta-trained); with many it tends to the task's own mean residual per operation. ``tau`` says how far
a task may depart from the ranker per operation (accuracy points / 100). It costs no LLM call and
closed-form updates of a 13 x 13 matrix: this is TaP's cheapest way to learn inside the budget, the only learning
inside the budget.
"""

from __future__ import annotations

import torch

from tap.chains.edits import OP_IDS, Edit
from tap.env import Evaluation
from tap.errors import TapError

#: op id -> "scale.op", for the record of what was learnt
OP_NAMES = {i: f"{scale}.{op}" for (scale, op), i in OP_IDS.items()}


def require_same_examples(child: Evaluation, parent: Evaluation) -> None:
    """Refuse a paired comparison of two evaluations that do not cover the same examples in the same order."""
    if [r.uid for r in child.results] != [r.uid for r in parent.results]:
        raise TapError("a paired change needs both chains evaluated on the same examples (evaluate_at, same n).")


def paired_residual_noise(child: Evaluation, parent: Evaluation) -> tuple[float, float]:
    """The measured accuracy change of ``child`` over ``parent`` on the same examples, and its variance.

    Both evaluations must cover the same examples in the same order (``Environment.evaluate_at`` with
    the same ``n``).
    """
    require_same_examples(child, parent)
    n = len(child.results)
    d = [float(c.correct) - float(p.correct) for c, p in zip(child.results, parent.results)]  # (n,) in {-1, 0, 1}
    mean = sum(d) / n
    var = sum((x - mean) ** 2 for x in d) / n
    return mean, max(var, 1.0 / n) / n


class OpCorrection:
    """Posterior over this task's per-operation departure from a ranker (module docstring).

    Args:
        tau: prior standard deviation of a departure (accuracy change); must be > 0.
    """

    def __init__(self, tau: float) -> None:
        if tau <= 0:
            raise TapError(f"the correction's prior scale tau must be > 0, got {tau}.")
        self.tau = tau
        d = max(OP_IDS.values()) + 1
        self.precision = torch.eye(d, dtype=torch.float64) / tau**2  # (D, D)
        self.weighted = torch.zeros(d, dtype=torch.float64)  # (D,) sum of phi * residual / noise
        self.observations = 0

    @staticmethod
    def features(edits: tuple[Edit, ...] | list[Edit]) -> torch.Tensor:
        """(D,) how many edits of each operation a candidate makes."""
        phi = torch.zeros(max(OP_IDS.values()) + 1, dtype=torch.float64)
        for e in edits:
            phi[e.op_id] += 1.0
        return phi

    def add(self, edits: tuple[Edit, ...] | list[Edit], residual: float, noise: float) -> None:
        """One verified candidate: its measured minus predicted accuracy change and the noise variance."""
        if noise <= 0:
            raise TapError(f"a measurement's noise variance must be > 0, got {noise}.")
        phi = self.features(edits)
        self.precision += torch.outer(phi, phi) / noise
        self.weighted += phi * residual / noise
        self.observations += 1

    def weights(self) -> torch.Tensor:
        """(D,) posterior mean departure per operation."""
        return torch.linalg.solve(self.precision, self.weighted)

    def correct(self, candidates: list[tuple[Edit, ...]]) -> list[float]:
        """The posterior mean correction of each candidate's predicted change."""
        if not self.observations:
            return [0.0] * len(candidates)
        w = self.weights()
        return [float(self.features(edits) @ w) for edits in candidates]

    def spread(self, candidates: list[tuple[Edit, ...]]) -> list[float]:
        """Per candidate, the mean over its edits of the posterior standard deviation of the edit's operation's
        departure: ``tau`` for every candidate before any measurement, smaller where this task has measured its
        operations (an exploration bonus over operations, ``SuccessiveHalvingSearch(op_bonus=True)``).
        """
        if not candidates:
            return []
        sd = torch.linalg.inv(self.precision).diagonal().sqrt()  # (D,)
        phi = torch.stack([self.features(edits) for edits in candidates])  # (N, D) operation counts
        share = phi / phi.sum(dim=1, keepdim=True).clamp(min=1.0)  # (N, D): each edit's weight in the mean
        return (share @ sd).tolist()

    def summary(self, digits: int = 4) -> dict[str, float]:
        """The operations measured so far -> their posterior mean departure (the record of the "why")."""
        if not self.observations:
            return {}
        w = self.weights()
        seen = (self.precision.diagonal() > 1.0 / self.tau**2 + 1e-12).nonzero().flatten().tolist()
        return {OP_NAMES[i]: round(float(w[i]), digits) for i in seen}


__all__ = ["OpCorrection", "paired_residual_noise", "require_same_examples"]
