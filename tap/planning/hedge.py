"""How far to trust the ranker on this task: its entrants against uniformly drawn ones, measured online.

Every round of the successive halving enters some candidates by the ranker's order and some drawn
uniformly from the menu. All of them are measured on the first rung, on the same examples as the
incumbent, so each has a paired change over the incumbent (accuracy, plus ``dense_weight`` times the
gold-answer probability, the search's own score). The mean change of the ranked entrants minus that of
the random ones is the ranker's measured skill on this task, paid for by the search's own
verification: no extra LLM call.

``RankerSkill`` keeps those changes and sets the ranked share of the next round's entrants by
probability matching: the posterior probability that ranked entrants gain more than random ones,

    P = Phi((mean_ranked - mean_random) / sqrt(s^2 (1 / n_ranked + 1 / n_random))),

with ``s^2`` the pooled variance of the changes, floored at ``floor``. Before any random entrant is
measured the share is the search's own (``1 - explore``). At least one entrant stays ranked and one
random, so both keep being measured. A ranker that helps keeps nearly all the slots; one that
misleads on this task (the operation prior on arithmetic, whose meta-training saw only
instruction-induction tasks) loses them to uniform draws, and the search tends to ``random-sh``.
"""

from __future__ import annotations

import math

from tap.env import Evaluation
from tap.errors import TapError
from tap.planning.adapt import require_same_examples


def paired_gain(child: Evaluation, parent: Evaluation, dense_weight: float) -> float:
    """``child``'s change over ``parent`` on the same examples: accuracy plus ``dense_weight`` x gold probability."""
    require_same_examples(child, parent)
    return (child.accuracy - parent.accuracy) + dense_weight * (child.dense - parent.dense)


class RankerSkill:
    """Paired first-rung gains of two kinds of entrants (by default ranked and random), and the share of the
    first kind they imply (module docstring).

    Args:
        explore: the second kind's share before any evidence (the search's random share).
        floor: lowest variance of a gain (keeps a few equal gains from looking certain).
        arms: the two kinds of entrant: the first is weighed against the second (``("ranked", "composed")``
            weighs the ranker's plain picks against the plans it composes, ``SuccessiveHalvingSearch``'s
            ``compose_hedge``).
    """

    def __init__(self, explore: float, floor: float = 0.01, arms: tuple[str, str] = ("ranked", "random")) -> None:
        if not 0 <= explore <= 1 or floor <= 0 or len(arms) != 2 or arms[0] == arms[1]:
            raise TapError(f"invalid hedge settings: explore ({explore}) must be in [0, 1], the variance floor "
                           f"({floor}) > 0, and the arms ({arms}) two different kinds.")
        self.explore, self.floor, self.arms = explore, floor, tuple(arms)
        self.gains: dict[str, list[float]] = {a: [] for a in self.arms}  # every gain added so far, per kind

    def add(self, source: str, gain: float) -> None:
        """One entrant's first-rung gain; ``source`` is one of ``arms``."""
        if source not in self.arms:
            raise TapError(f"an entrant is {' or '.join(repr(a) for a in self.arms)}, got {source!r}.")
        self.gains[source].append(float(gain))

    def probability(self) -> float | None:
        """P(the first kind gains more than the second); None before both were measured."""
        r, u = self.gains[self.arms[0]], self.gains[self.arms[1]]
        if not r or not u:
            return None
        mr, mu = sum(r) / len(r), sum(u) / len(u)
        dof = len(r) + len(u) - 2
        ss = sum((x - mr) ** 2 for x in r) + sum((x - mu) ** 2 for x in u)
        var = max(ss / dof if dof > 0 else 0.0, self.floor)
        z = (mr - mu) / math.sqrt(var * (1 / len(r) + 1 / len(u)))
        return 0.5 * (1 + math.erf(z / math.sqrt(2)))

    def random_slots(self, slots: int) -> int:
        """How many of ``slots`` entrants to give the second kind (by default: to draw uniformly; the rest by the
        ranker's order); at least one of each.
        """
        if slots < 2:
            return 0
        p = self.probability()
        share = 1 - self.explore if p is None else p
        ranked = min(max(round(slots * share), 1), slots - 1)
        return slots - ranked

    def summary(self) -> dict:
        """What was measured so far, for the round's record."""
        (a, b), p = self.arms, self.probability()
        r, u = self.gains[a], self.gains[b]
        return {a: len(r), b: len(u), f"{a}_mean": round(sum(r) / len(r), 4) if r else None,
                f"{b}_mean": round(sum(u) / len(u), 4) if u else None,
                f"p_{a}_better": None if p is None else round(p, 4)}


__all__ = ["RankerSkill", "paired_gain"]
