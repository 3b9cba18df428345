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
    runs = [_run("tap-model", rising[:2]), _run("tap-model", rising[2:]), _run("tap-readable", falling),
            _run("tap", [{"predicted": 1.0, "uncertainty": 0.0}, {"predicted": 2.0, "uncertainty": 0.0}])]
    table = compare.planning_report(runs)
    assert "| tap-model | 2 | 0.500 | 5.00 | 0.100 | 1.00 (4) |" in table  # pooled over both runs' entrants
    assert "| tap-readable | 1 | 0.500 | 5.00 | 0.100 | -1.00 (3) |" in table
    assert "| tap | 1 | 0.500 | 5.00 | 0.100 | - |" in table  # no uncertainty, no correlation


def _curve_run(method: str, seed: int, tests: dict[int, float]) -> dict:
    return {"task": "ii:rhymes", "method": method, "seed": seed, "setting": "baseline", "budget": max(tests),
            "budgets": sorted(tests), "unit": "calls", "initial_test": 0.0, "collection_chain_evals": 0,
            "proposer": {}, "seconds": 1.0, "curve": [{"budget": b, "test": t} for b, t in sorted(tests.items())]}


def test_report_cells_use_only_the_runs_that_reached_the_budget():
    compare = import_benchmark("compare")
    # seeds 0 and 1 ran to 512; seed 2 only to 256 (an extension of the small budgets)
    runs = [_curve_run("random-sh", 0, {256: 0.2, 512: 0.4}), _curve_run("random-sh", 1, {256: 0.4, 512: 0.6}),
            _curve_run("random-sh", 2, {256: 0.6}),
            _curve_run("tap", 0, {256: 0.5, 512: 0.5}), _curve_run("tap", 1, {256: 0.5, 512: 0.7}),
            _curve_run("tap", 2, {256: 0.9})]
    table = compare.report(runs)
    # @256 over all three seeds; @512 over the two that got there, marked; the short run's last point is not
    # mistaken for its accuracy at 512
    assert "| rhymes | random-sh | baseline | 3 | 0.000 ± 0.000 | 0.400 ± 0.497 | 0.500 ± 1.271 (n=2) |" in table
    # paired: tap - random-sh per seed = +0.3, +0.1, +0.3 at 256; +0.1, +0.1 at 512; random-sh's final
    # accuracy is the mean of the runs that reached the top budget (0.5), not of all three
    assert ("| rhymes | tap | 3 | 0.233 ± 0.287 | 0.100 ± 0.000 (n=2) | 3/3 runs; median 256; 0/3 within 171 |"
            in table)


def test_calls_to_target_are_exact_where_a_run_recorded_its_acceptances():
    compare = import_benchmark("compare")
    exact = _curve_run("tap", 0, {128: 0.5, 256: 0.7})
    exact["accepted"] = [{"calls": 32, "examples": 32, "test": 0.0}, {"calls": 80, "examples": 16, "test": 0.5},
                         {"calls": 200, "examples": 32, "test": 0.7}]
    assert compare.calls_to(exact, 0.5) == 80 and compare.calls_to(exact, 0.6) == 200  # the call of each acceptance
    assert compare.calls_to(exact, 0.8) is None
    assert compare.calls_to(_curve_run("random-sh", 0, {128: 0.5, 256: 0.7}), 0.5) == 128  # older runs: the grid
    runs = [_curve_run("random-sh", 0, {128: 0.1, 256: 0.5}), exact]
    table = compare.paired_report(runs, [128, 256])
    assert "| rhymes | tap | 1 | 0.400 | 0.200 | 1/1 runs; median 80; 1/1 within 85 |" in table


def test_quick_runs_on_a_shipped_task_unless_told_otherwise():
    compare = import_benchmark("compare")
    assert compare.METHODS[:4] == ("tap", "tap-model", "random-sh", "tap-readable")  # the presets, then baselines
    assert compare.default_tasks(None, quick=True) == [compare.QUICK] and compare.QUICK.startswith("ii:")
    assert compare.default_tasks(["ii:rhymes", "ii:sum"], quick=True) == ["ii:rhymes"]
    assert compare.default_tasks(None, quick=False) == compare.DEV + compare.HELD_OUT
    assert compare.default_tasks(["ii:rhymes"], quick=False) == ["ii:rhymes"]


def test_default_checkpoints_are_where_the_training_configs_write_them():
    import yaml

    compare = import_benchmark("compare")
    for path, config in ((compare.WORLD_MODEL, "world_model"),):
        written = yaml.safe_load((compare.ROOT / "configs" / f"{config}.yaml").read_text())["checkpoint"]["dirpath"]
        assert path == compare.ROOT / written, (config, path, written)
