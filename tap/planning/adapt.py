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
closed-form updates of a 13 x 13 matrix: this is TaP's cheapest way to learn inside the budget, beside
the world model's gradient refinement (``tap.planning.refine``).
"""

from __future__ import annotations

import json

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

    def imagined(self, edits: tuple[Edit, ...] | list[Edit], noise: float) -> OpCorrection:
        """A copy that has also measured ``edits`` with noise variance ``noise``, for its uncertainty only: the
        batch acquisition's stand-in for a measurement not made yet (GP-BUCB's hallucinated observation). Its
        posterior mean is not meant to be read (a hallucinated outcome equal to the mean would leave it as is).
        """
        if noise <= 0:
            raise TapError(f"a measurement's noise variance must be > 0, got {noise}.")
        out = OpCorrection(self.tau)
        phi = self.features(edits)
        out.precision = self.precision + torch.outer(phi, phi) / noise
        out.weighted, out.observations = self.weighted.clone(), self.observations
        return out

    def summary(self, digits: int = 4) -> dict[str, float]:
        """The operations measured so far -> their posterior mean departure (the record of the "why")."""
        if not self.observations:
            return {}
        w = self.weights()
        seen = (self.precision.diagonal() > 1.0 / self.tau**2 + 1e-12).nonzero().flatten().tolist()
        return {OP_NAMES[i]: round(float(w[i]), digits) for i in seen}


def edit_key(edit: Edit) -> str:
    """What an edit is, across the chains of one task: its operation and payload (not its target)."""
    return f"{edit.scale}.{edit.op}|{json.dumps(edit.payload, sort_keys=True, ensure_ascii=False)}"


class EditCorrection(OpCorrection):
    """``OpCorrection`` plus each edit's own departure inside its operation, learnt from the same measurements.

    The regression gains one feature per edit measured so far (``edit_key``: operation and payload, so the same
    instruction, step or demonstration entered from another chain counts as the same edit):

        residual = phi . w + psi . v + noise,   w ~ N(0, tau^2 I),   v ~ N(0, tau_edit^2 I)

    with ``psi`` how many times a candidate makes each measured edit. An edit never measured has no ``v`` and
    keeps its operation's correction; one measured twice above its operation's mean ranks above its unmeasured
    siblings. (A Gaussian process over candidates with the kernel ``tau^2 [same op] + tau_edit^2 [same edit]``:
    ``benchmarks/online_rank.py``'s ``prior+op+payload``, measured there before it was offered here,
    ``benchmarks/results/within_op/PLAN.md`` addendum 3.) ``summary`` records the operations' departures of this
    joint posterior; the uncertainty (``spread``, ``imagined``) stays the per-operation model's.

    Args:
        tau: prior standard deviation of an operation's departure; must be > 0.
        tau_edit: prior standard deviation of an edit's departure from its operation's; must be > 0.
    """

    def __init__(self, tau: float, tau_edit: float) -> None:
        super().__init__(tau)
        if tau_edit <= 0:
            raise TapError(f"the correction's per-edit prior scale tau_edit must be > 0, got {tau_edit}.")
        self.tau_edit = tau_edit
        self._measured: list[tuple[tuple[Edit, ...], float, float]] = []  # (edits, residual, noise)

    def add(self, edits: tuple[Edit, ...] | list[Edit], residual: float, noise: float) -> None:
        super().add(edits, residual, noise)
        self._measured.append((tuple(edits), residual, noise))

    def _design(self, edits: tuple[Edit, ...] | list[Edit], vocab: dict[str, int]) -> torch.Tensor:
        """(D + E,) operation counts, then counts of the measured edits in ``vocab`` order."""
        psi = torch.zeros(len(vocab), dtype=torch.float64)
        for e in edits:
            if (j := vocab.get(edit_key(e))) is not None:
                psi[j] += 1.0
        return torch.cat([self.features(edits), psi])

    def _posterior(self) -> tuple[torch.Tensor, dict[str, int]]:
        """(D + E,) the posterior mean of the operations' and the measured edits' departures, and the edits'
        order (``edit_key`` -> index after the D operations).
        """
        keys = dict.fromkeys(edit_key(e) for edits, _, _ in self._measured for e in edits)
        vocab = {k: j for j, k in enumerate(keys)}
        d = len(self.weighted)
        prior = torch.cat([torch.full((d,), self.tau**-2), torch.full((len(vocab),), self.tau_edit**-2)])
        precision = torch.diag(prior.double())  # (D + E, D + E)
        weighted = torch.zeros(d + len(vocab), dtype=torch.float64)
        for edits, residual, noise in self._measured:
            x = self._design(edits, vocab)  # (D + E,)
            precision += torch.outer(x, x) / noise
            weighted += x * residual / noise
        return torch.linalg.solve(precision, weighted), vocab

    def weights(self) -> torch.Tensor:
        """(D,) posterior mean departure per operation, with the measured edits' own departures beside them."""
        return self._posterior()[0][: len(self.weighted)] if self.observations else torch.zeros_like(self.weighted)

    def correct(self, candidates: list[tuple[Edit, ...]]) -> list[float]:
        """The posterior mean correction of each candidate: its operations' departures plus its measured edits'."""
        if not self.observations:
            return [0.0] * len(candidates)
        w, vocab = self._posterior()
        return [float(self._design(edits, vocab) @ w) for edits in candidates]


__all__ = ["EditCorrection", "OpCorrection", "edit_key", "paired_residual_noise"]
