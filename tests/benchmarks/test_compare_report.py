"""compare.py's planning table on hand-made runs: the cost ratio and how the acquisition's uncertainty
relates to its predicted score."""

from __future__ import annotations

from tests.helpers import import_benchmark


def _run(method: str, verified: list[dict]) -> dict:
    return {"method": method, "llm_calls": 10, "llm_requests": 10,
            "planning": {"rounds": 1, "per_round": 0.5, "full_evaluation_seconds": 5.0, "ratio": 0.1},
            "config": {"rounds": [{"verified": verified}]}}


def test_planning_table_gives_the_score_spread_correlation_of_the_entrants():
    compare = import_benchmark("compare")
    rising = [{"predicted": p, "uncertainty": 0.1 * p} for p in (1.0, 2.0, 3.0, 4.0)]
    falling = [{"predicted": p, "uncertainty": -p} for p in (1.0, 2.0, 3.0)]
    runs = [_run("tap-sh", rising[:2]), _run("tap-sh", rising[2:]), _run("tap-sh-mean", falling),
            _run("prior-sh", [{"predicted": 1.0, "uncertainty": 0.0}, {"predicted": 2.0, "uncertainty": 0.0}])]
    table = compare.planning_report(runs)
    assert "| tap-sh | 2 | 0.500 | 5.00 | 0.100 | 1.00 (4) |" in table  # pooled over both runs' entrants
    assert "| tap-sh-mean | 1 | 0.500 | 5.00 | 0.100 | -1.00 (3) |" in table
    assert "| prior-sh | 1 | 0.500 | 5.00 | 0.100 | - |" in table  # no uncertainty, no correlation
