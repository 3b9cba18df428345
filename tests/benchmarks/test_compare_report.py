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


def _curve_run(method: str, seed: int, tests: dict[int, float]) -> dict:
    return {"task": "ii:rhymes", "method": method, "seed": seed, "setting": "baseline", "budget": max(tests),
            "budgets": sorted(tests), "unit": "calls", "initial_test": 0.0, "collection_chain_evals": 0,
            "proposer": {}, "seconds": 1.0, "curve": [{"budget": b, "test": t} for b, t in sorted(tests.items())]}


def test_report_cells_use_only_the_runs_that_reached_the_budget():
    compare = import_benchmark("compare")
    # seeds 0 and 1 ran to 512; seed 2 only to 256 (an extension of the small budgets)
    runs = [_curve_run("random-sh", 0, {256: 0.2, 512: 0.4}), _curve_run("random-sh", 1, {256: 0.4, 512: 0.6}),
            _curve_run("random-sh", 2, {256: 0.6}),
            _curve_run("tap-sh", 0, {256: 0.5, 512: 0.5}), _curve_run("tap-sh", 1, {256: 0.5, 512: 0.7}),
            _curve_run("tap-sh", 2, {256: 0.9})]
    table = compare.report(runs)
    # @256 over all three seeds; @512 over the two that got there, marked; the short run's last point is not
    # mistaken for its accuracy at 512
    assert "| rhymes | random-sh | baseline | 3 | 0.000 ± 0.000 | 0.400 ± 0.497 | 0.500 ± 1.271 (n=2) |" in table
    # paired: tap-sh - random-sh per seed = +0.3, +0.1, +0.3 at 256; +0.1, +0.1 at 512; random-sh's final
    # accuracy is the mean of the runs that reached the top budget (0.5), not of all three
    assert ("| rhymes | tap-sh | 3 | 0.233 ± 0.287 | 0.100 ± 0.000 (n=2) | 3/3 runs; median 256; 0/3 within 171 |"
            in table)


def test_calls_to_target_are_exact_where_a_run_recorded_its_acceptances():
    compare = import_benchmark("compare")
    exact = _curve_run("prior-sh-hedge-race", 0, {128: 0.5, 256: 0.7})
    exact["accepted"] = [{"calls": 32, "examples": 32, "test": 0.0}, {"calls": 80, "examples": 16, "test": 0.5},
                         {"calls": 200, "examples": 32, "test": 0.7}]
    assert compare.calls_to(exact, 0.5) == 80 and compare.calls_to(exact, 0.6) == 200  # the call of each acceptance
    assert compare.calls_to(exact, 0.8) is None
    assert compare.calls_to(_curve_run("random-sh", 0, {128: 0.5, 256: 0.7}), 0.5) == 128  # older runs: the grid
    runs = [_curve_run("random-sh-race", 0, {128: 0.1, 256: 0.5}), exact]
    table = compare.paired_report(runs, [128, 256], "random-sh-race")
    assert "| rhymes | prior-sh-hedge-race | 1 | 0.400 | 0.200 | 1/1 runs; median 80; 1/1 within 85 |" in table


def test_each_variant_is_paired_with_the_search_it_modifies():
    compare = import_benchmark("compare")
    assert compare.variant_of("prior-sh-carry") == "prior-sh" and compare.variant_of("random-sh-carry") == "random-sh"
    assert compare.variant_of("tap-sh-mean") == "tap-sh" and compare.variant_of("prior-sh") is None
    assert compare.variant_of("random-sh") is None  # not a variant of the baseline "random"
    assert compare.variant_of("prior-sh-e4") == "prior-sh" and compare.variant_of("random-sh-e4") == "random-sh"
    assert compare.SH_VARIANTS["prior-sh-e4"][1]["enter"] == compare.SH_VARIANTS["random-sh-e4"][1]["enter"] == 4
    runs = [_curve_run("prior-sh", 0, {256: 0.2, 512: 0.4}), _curve_run("prior-sh", 1, {256: 0.4, 512: 0.4}),
            _curve_run("prior-sh-carry", 0, {256: 0.3, 512: 0.6}),
            _curve_run("prior-sh-carry", 1, {256: 0.4, 512: 0.6}),
            _curve_run("random-sh-carry", 0, {256: 0.9, 512: 0.9})]  # no random-sh run: nothing to pair it with
    table = compare.ablation_report(runs, [256, 512])
    # per seed: +0.1 and 0.0 at 256, +0.2 and +0.2 at 512
    assert "| rhymes | prior-sh-carry − prior-sh | 2 | 0.050 ± 0.635 | 0.200 ± 0.000 |" in table
    assert "random-sh-carry" not in table
    assert compare.ablation_report(runs[:2], [256, 512]) == ""


def test_variants_are_paired_on_final_fluency_and_over_all_tasks():
    compare = import_benchmark("compare")
    base, variant = "prior-sh-hedge-mix4-race-adapt-lazy-bonus", "prior-sh-hedge-mix4-race-adapt-lazy-bonus-fluent"
    assert compare.variant_of(variant) == base and compare.SH_VARIANTS[variant][1]["fluency_weight"] == 0.1

    def run(task: str, method: str, seed: int, test: float, final: float) -> dict:
        return {**_curve_run(method, seed, {128: test}), "task": task, "fluency": {"initial": -3.3, "final": final}}

    runs = [run("ii:rhymes", base, 0, 0.5, -5.0), run("ii:rhymes", variant, 0, 0.4, -4.0),
            run("ii:rhymes", base, 1, 0.5, -4.0), run("ii:rhymes", variant, 1, 0.6, -3.0),
            run("ii:sentiment", base, 0, 0.7, -3.5), run("ii:sentiment", variant, 0, 0.7, float("nan"))]
    table = compare.ablation_report(runs, [128])
    assert "| Δ@128 | Δ final fluency |" in table
    # rhymes: accuracy -0.1 and +0.1, fluency +1.0 and +1.0; sentiment: 0.0, and no fluency (an empty text)
    assert f"| rhymes | {variant} − {base} | 2 | 0.000 ± 1.271 | 1.000 ± 0.000 |" in table
    assert f"| sentiment | {variant} − {base} | 1 | 0.000 | - |" in table
    assert f"| all | {variant} − {base} | 3 | 0.000 ± 0.248 | 1.000 ± 0.000 (n=2) |" in table


def test_quick_runs_on_a_shipped_task_unless_told_otherwise():
    compare = import_benchmark("compare")
    assert compare.default_tasks(None, quick=True) == [compare.QUICK] and compare.QUICK.startswith("ii:")
    assert compare.default_tasks(["ii:rhymes", "ii:sum"], quick=True) == ["ii:rhymes"]
    assert compare.default_tasks(None, quick=False) == compare.DEV + compare.HELD_OUT
    assert compare.default_tasks(["ii:rhymes"], quick=False) == ["ii:rhymes"]


def test_default_checkpoints_are_where_the_training_configs_write_them():
    import yaml

    compare = import_benchmark("compare")
    for path, config in ((compare.WORLD_MODEL, "world_model"), (compare.POLICY, "policy")):
        written = yaml.safe_load((compare.ROOT / "configs" / f"{config}.yaml").read_text())["checkpoint"]["dirpath"]
        assert path == compare.ROOT / written, (config, path, written)
