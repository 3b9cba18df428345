"""The noise-ceiling and sensitivity benchmarks' arithmetic on a rule-based fake LLM."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.helpers import RuleLLM, arithmetic_task

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import noise_ceiling
        import sensitivity
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return noise_ceiling, sensitivity


def _naive_spearman(x, y):
    def ranks(v):
        return [sum(u < a for u in v) + (sum(u == a for u in v) - 1) / 2 for a in v]
    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    return cov / (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5


def test_spearman_against_a_naive_loop_with_ties(bench):
    noise, _ = bench
    import random

    rng = random.Random(0)
    for _ in range(20):
        x = [rng.choice([0, 0.25, 0.5, 1.0]) for _ in range(12)]
        y = [a + rng.choice([-0.25, 0, 0.25]) for a in x]
        if len(set(x)) > 1 and len(set(y)) > 1:
            assert noise.spearman(x, y) == pytest.approx(_naive_spearman(x, y))
    assert noise.spearman([1, 2, 3, 4], [1, 2, 3, 4]) == pytest.approx(1.0)
    assert noise.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert noise.spearman([1, 1, 1], [1, 2, 3]) is None and noise.spearman([1, 2], [1, 2]) is None


def test_noise_ceiling_uses_two_disjoint_halves_and_reports_every_fidelity(bench, monkeypatch):
    noise, _ = bench
    llm = RuleLLM()
    task = arithmetic_task(200)
    seen: list[tuple[int, ...]] = []
    evaluate = noise.Environment.evaluate

    def spy(self, chain, examples):
        seen.append(tuple(ex.uid for ex in examples))
        return evaluate(self, chain, examples)

    monkeypatch.setattr(noise.Environment, "evaluate", spy)
    row = noise.measure(task, _cached(llm), n_chains=5, n_edits=6, grid=[2, 4, 8], seed=0, max_new_tokens=8)
    assert row["grid"] == [2, 4, 8] and row["half"] == 8 and row["chains"] == 5 and row["edits"] == 6
    assert set(row["by_n"]) == {"2", "4", "8"}
    assert row["example_evals"] == (5 + 6) * 16  # every chain on both halves of 8
    for v in row["by_n"].values():
        assert 0 <= v["nonzero_delta"] <= 1 and (v["accuracy"] is None or -1 <= v["accuracy"] <= 1)
    halves = set(seen)
    assert len(halves) == 2 and len(seen) == 2 * 11
    a, b = halves
    assert len(a) == len(b) == 8 and not set(a) & set(b)
    assert set(a) | set(b) == {ex.uid for ex in task.val[:16]}  # the first 16 of the val order, never test


def test_usable_rule(bench):
    _, sens = bench
    row = {"examples": 48, "acc_max": 0.6, "acc_min": 0.1, "spread_ratio": 2.0}
    assert sens.usable(row)
    assert not sens.usable({**row, "examples": 15})
    assert not sens.usable({**row, "acc_max": 0.3})
    assert not sens.usable({**row, "spread_ratio": 1.2})


def _cached(llm):
    from tap.llm.cache import CallCache
    from tap.llm.cached import CachedLLM

    return CachedLLM(llm, CallCache(None))
