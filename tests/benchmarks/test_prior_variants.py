"""The chain-conditioned prior's bookkeeping, on hand-made sibling rows."""

from __future__ import annotations

import pytest

from tap.chains import Chain
from tests.helpers import import_benchmark


@pytest.fixture(scope="module")
def pv():
    return import_benchmark("prior_variants")


def _row(task: str, sample: int, op: int, delta: float) -> dict:
    return {"task": task, "sample": sample, "op_id": op, "reward": 0.5, "next_reward": 0.5 + delta,
            "chain": Chain(instruction="Answer.").to_json()}


def test_in_task_tables_count_only_the_same_tasks_other_samples(pv):
    groups = [[_row("a", 0, 1, 0.4), _row("a", 0, 2, -0.2)],  # sample 0 of task a
              [_row("a", 1, 1, 0.0), _row("a", 1, 2, 0.2)],  # sample 1 of task a
              [_row("a", 2, 1, 0.2), _row("a", 2, 2, 0.0)],
              [_row("b", 0, 1, -1.0), _row("b", 0, 2, 1.0)]]  # another task: never counted for a
    tables = pv.in_task_tables(groups, pv.CONTEXTS["none"])
    assert tables[("a", 0)] == pytest.approx({(1, 0): 0.1, (2, 0): 0.1})  # samples 1 and 2 only
    assert tables[("a", 1)] == pytest.approx({(1, 0): 0.3, (2, 0): -0.1})  # samples 0 and 2
    assert tables[("b", 0)] == {}  # no other sample of b: nothing to know
