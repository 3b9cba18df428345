"""The within-chain exploration's pair bookkeeping on hand-made groups."""

from __future__ import annotations

import pytest

from tests.helpers import import_benchmark


@pytest.fixture(scope="module")
def wc():
    return import_benchmark("within_chain")


def test_concordance_counts_same_operation_pairs_that_differ_and_splits_ties(wc):
    ops = [[1, 1, 2], [3, 3, 3], [4, 5]]
    judge = [[0.1, 0.0, 0.9], [0.2, 0.2, 0.0], [0.0, 1.0]]
    score = [[5.0, 1.0, 0.0], [7.0, 7.0, 9.0], [0.0, 1.0]]
    # group 0: one pair, ordered right; group 1: (0, 2) and (1, 2) ordered wrong, (0, 1) judged equal: skipped;
    # group 2: no same-operation pair, left out
    assert wc.within_op_concordance(ops, score, judge) == [1.0, 0.0]
    assert wc.within_op_concordance([[1, 1]], [[3.0, 3.0]], [[0.0, 0.5]]) == [0.5]  # a tied score counts half


def test_tasks_must_belong_to_the_config(wc, capsys):
    with pytest.raises(SystemExit):
        wc.main(["--tasks", "ii:rhymes"])  # a transfer task is not in the pool's config
    assert "--tasks must be tasks of ii_pool.yaml; not in it: ['ii:rhymes']" in capsys.readouterr().err
