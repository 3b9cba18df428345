"""Interval arithmetic the benchmark reports share: means with 95 % Student-t intervals over seeds."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

#: two-sided 95 % Student t quantiles by degrees of freedom
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
        20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
        29: 2.045, 30: 2.042}


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % Student-t interval (0 for a single value)."""
    if len(values) < 2:
        return (values[0] if values else float("nan")), 0.0
    m, s = statistics.mean(values), statistics.stdev(values)
    return m, T975.get(len(values) - 1, 1.96) * s / len(values) ** 0.5


def fmt(values: list[float], digits: int = 3) -> str:
    """``mean ± half-width`` (NaNs dropped), the mean alone for one value, ``-`` for none."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "-"
    m, h = mean_ci(values)
    return f"{m:.{digits}f} ± {h:.{digits}f}" if len(values) > 1 else f"{m:.{digits}f}"


def same_op_concordance(ops: Sequence[int], score: Sequence[float], judge: Sequence[float]) -> list[float]:
    """One sibling group's pairs with the same operation and different ``judge`` values, in pair order: 1 where
    ``score`` orders the pair as ``judge`` does, 0.5 where it ties them, 0 where it reverses them.
    """
    n = len(ops)
    return [0.5 if score[a] == score[b] else float((score[a] > score[b]) == (judge[a] > judge[b]))
            for a in range(n) for b in range(a + 1, n) if ops[a] == ops[b] and judge[a] != judge[b]]


def seed_families(results: dict[str, dict]) -> dict[str, list[dict]]:
    """Runs keyed ``<family>-s<seed>`` -> each family's runs in seed-name order."""
    fams: dict[str, list[dict]] = {}
    for name in sorted(results):
        fams.setdefault(name.rsplit("-s", 1)[0], []).append(results[name])
    return fams


def paired_over_groups(a: list[list[float]], b: list[list[float]], scale: float) -> tuple[float, float, int]:
    """Per-group difference of two scorers' gains (each a list over seeds of per-group gains, the groups in one
    order), averaged over seeds and divided by ``scale`` (the oracle's mean gain): its mean, 95 % half-width and
    the number of groups.
    """
    diff = [statistics.mean(x[g] - y[g] for x, y in zip(a, b)) / scale for g in range(len(a[0]))]
    m, h = mean_ci(diff)
    return m, h, len(diff)
