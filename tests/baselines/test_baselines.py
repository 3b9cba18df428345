"""The baseline searches on a rule-based fake LLM and a tiny transformers model: budget, leakage,
determinism, nested budgets, replayable results, errors; and the head-to-head benchmark's bookkeeping."""

from __future__ import annotations

import copy
import json

import pytest

from tap.baselines import BASELINES, USES_PROPOSER, SearchResult, clean_instruction, run_baseline
from tap.chains import replay
from tap.errors import TapError
from tests.helpers import RuleLLM, arithmetic_task, import_benchmark

NAMES = sorted(BASELINES)


@pytest.fixture(scope="module")
def task():
    return arithmetic_task(60)


def _run(name, task, budget, seed=0, llm=None, **kw):
    return run_baseline(name, llm or RuleLLM(), task, budget, seed, eval_examples=6, progress=False, **kw)


def _prompts(llm: RuleLLM) -> list[str]:
    return [p for b in llm.generate_batches for p in b] + [p for b in llm.score_batches for p, _ in b]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("budget", [1, 5, 13])
def test_budget_is_never_exceeded(task, name, budget):
    llm = RuleLLM()
    result = _run(name, task, budget, llm=llm)
    spent = result.costs["search"]["chain_evals"]
    assert spent <= budget + 1e-9
    assert all(r.evals <= budget + 1e-9 for r in result.records)
    # every (chain, example) pair paid once: spent x examples = distinct evaluated pairs
    pairs = {(json.dumps(r.chain, sort_keys=True), i) for r in result.records for i in range(r.examples)}
    assert len(pairs) == pytest.approx(spent * 6)
    assert result.records[0].note == "initial" and result.records[0].accepted
    if name != "grips":  # GrIPS may stop early when its patience runs out
        assert spent > budget - 1 or budget == 1


@pytest.mark.parametrize("name", NAMES)
def test_search_never_reads_test_examples(task, name):
    llm = RuleLLM()  # also the proposer: its prompts are checked too
    result = _run(name, task, 12, llm=llm)
    prompts = _prompts(llm)
    assert prompts
    for ex in task.test:
        assert not any(ex.input in p for p in prompts), ex.input
    train = {ex.uid for ex in task.train}
    assert all(d.uid in train for d in result.final_chain.demos)
    if name in USES_PROPOSER:
        assert result.costs["proposer"]["requests"] > 0


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_under_a_seed(task, name):
    def strip(r: SearchResult) -> dict:
        d = copy.deepcopy(r.to_dict())
        d["costs"]["search"].pop("seconds")
        return d

    a, b = _run(name, task, 10, seed=3), _run(name, task, 10, seed=3)
    assert strip(a) == strip(b)
    others = [strip(_run(name, task, 10, seed=s))["records"] for s in (4, 5, 6)]
    assert any(o != strip(a)["records"] for o in others), "the seed changes nothing"


@pytest.mark.parametrize("name", NAMES)
def test_budget_b_is_the_first_b_evaluations_of_a_longer_run(task, name):
    long = _run(name, task, 16, seed=1)
    for b in (4, 9):
        short = _run(name, task, b, seed=1)
        chain, edits, acc = long.best_at(b)
        assert short.final_chain == chain and short.edits == edits and short.final_search["accuracy"] == acc


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("calls", [6, 20, 45])
def test_call_budget_is_never_exceeded_and_nests(task, name, calls):
    """An LLM-call budget (example evaluations) alone, or with a chain-evaluation budget: neither is exceeded,
    and budget C is the first C calls of a longer run (every method, minibatch fidelities included)."""
    llm = RuleLLM()
    result = _run(name, task, None, llm=llm, budget_calls=calls)
    search = result.costs["search"]
    assert search["example_evals"] <= calls and all(r.calls <= calls for r in result.records)
    pairs = {(json.dumps(r.chain, sort_keys=True), i) for r in result.records for i in range(r.examples)}
    assert len(pairs) == search["example_evals"]  # each (chain, example) pair paid once
    if name not in ("grips", "opro", "evoprompt"):  # these may stop early (patience, a stalled proposer)
        assert search["example_evals"] > calls - 6
    both = _run(name, task, 3, llm=RuleLLM(), budget_calls=calls)
    assert both.costs["search"]["chain_evals"] <= 3 + 1e-9 and both.costs["search"]["example_evals"] <= calls
    long = _run(name, task, None, seed=1, budget_calls=60)
    short = _run(name, task, None, seed=1, budget_calls=calls)
    assert long.calls_at(long.costs["search"]["chain_evals"]) == long.costs["search"]["example_evals"]
    chain, edits, acc = long.best_at(calls=calls)
    assert short.final_chain == chain and short.edits == edits and short.final_search["accuracy"] == acc


@pytest.mark.parametrize("name", NAMES)
def test_result_replays_and_round_trips(task, name, tmp_path):
    result = _run(name, task, 10)
    assert replay(result.initial_chain, result.edits) == result.final_chain
    for r in result.records:
        assert replay(result.initial_chain, r.edits).to_dict() == r.chain
    assert result.final_search["accuracy"] >= result.initial_search["accuracy"]
    path = result.save(tmp_path / name)
    back = SearchResult.from_dict(json.loads(path.read_text()))
    as_json = lambda r: json.loads(json.dumps(r.to_dict()))  # noqa: E731 - JSON turns tuples into lists
    assert as_json(back) == as_json(result)
    assert back.best_at(5) == result.best_at(5)


@pytest.mark.parametrize("name", NAMES)
def test_runs_on_a_tiny_transformers_model(tiny_llm, name):
    from tap.llm import CachedLLM, CallCache

    task = arithmetic_task(40)
    llm = CachedLLM(tiny_llm, CallCache(None))
    result = run_baseline(name, llm, task, 4, 0, eval_examples=3, max_new_tokens=4, proposer_tokens=8,
                          progress=False)
    assert result.costs["search"]["chain_evals"] <= 4
    assert result.costs["search"]["llm_calls"] > 0
    assert result.final_chain.validate()


def test_a_different_proposer_is_used_and_counted(task):
    target, proposer = RuleLLM(), RuleLLM()
    result = _run("opro", task, 8, llm=target, proposer=proposer)
    assert proposer.generate_batches and all(p.rstrip().endswith("problems above.")
                                             for b in proposer.generate_batches for p in b)
    assert not any(p.rstrip().endswith("problems above.") for p in _prompts(target))
    assert result.costs["proposer"]["same_as_target"] is False


def test_a_proposer_that_never_proposes_stops_the_search(task):
    class Mute(RuleLLM):
        def generate(self, prompts, settings):
            return ["1 + 2 = 3" for _ in prompts]

    llm = Mute()
    result = _run("opro", task, 50, llm=llm, max_stall=8)
    assert result.costs["search"]["chain_evals"] == 1  # the initial chain only
    assert result.costs["proposer"]["requests"] == 8
    assert result.final_chain == result.initial_chain


def test_grips_stops_when_patience_runs_out(task):
    result = _run("grips", task, 400, patience=1, num_candidates=2)
    assert result.costs["search"]["chain_evals"] < 400


def test_bad_input_gets_clear_errors(task):
    with pytest.raises(TapError, match="unknown baseline"):
        _run("nope", task, 5)
    with pytest.raises(TapError, match="budget must be a positive"):
        _run("random", task, 0)
    with pytest.raises(TapError, match="give a budget"):
        _run("random", task, None)
    with pytest.raises(TapError, match="budget_calls must be a positive"):
        _run("random", task, None, budget_calls=0)
    with pytest.raises(TapError, match="bad setting for baseline 'ape'"):
        _run("ape", task, 5, patience=3)


def test_clean_instruction():
    assert clean_instruction("<INS>Add the numbers.</INS> trailing") == "Add the numbers."
    assert clean_instruction("<prompt>Solve it step by step</prompt>") == "Solve it step by step"
    assert clean_instruction("The instruction was to add the two numbers.") == "Add the two numbers."
    assert clean_instruction('1. Instruction: "answer with a number"') == "Answer with a number"
    assert clean_instruction("1. 0 + 6 = 6\n2. 8 + 9 = 17") is None
    assert clean_instruction("Cross over the prompts:\nAdd both numbers.", echo="Cross over the prompts:") == \
        "Add both numbers."
    assert clean_instruction("") is None


def test_promptolution_reference_row_runs_under_the_same_accounting(task):
    pytest.importorskip("promptolution")
    PromptolutionEvoPrompt = import_benchmark("promptolution_ref").PromptolutionEvoPrompt  # noqa: N806

    llm = RuleLLM()
    run = lambda b, seed=0: PromptolutionEvoPrompt(llm, task, b, seed, eval_examples=6, progress=False).run()  # noqa: E731
    result = run(14)
    assert result.costs["search"]["chain_evals"] == 14
    assert result.costs["proposer"]["requests"] > 0
    assert any("<prompt>" in p for b in llm.generate_batches for p in b)  # its own meta-prompt template
    for ex in task.test:
        assert not any(ex.input in p for p in _prompts(llm))
    assert replay(result.initial_chain, result.edits) == result.final_chain
    again = run(14)
    assert again.records == result.records
    short = run(9)
    assert short.final_chain == result.best_at(9)[0]


# ---- the benchmark's bookkeeping ----------------------------------------------------------------
@pytest.fixture
def compare():
    return import_benchmark("compare")


def test_compare_runs_tap_and_baselines_on_the_same_split(compare, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from tap.planning import PlanConfig, Planner
    from tests.helpers import tiny_world_model, write_arithmetic_jsonl

    spec = write_arithmetic_jsonl(tmp_path / "add.jsonl", 80)
    llm = RuleLLM()
    config = PlanConfig(settings={"menu": 16}, eval_examples=6, test_examples=0)
    planner = Planner(tiny_world_model(), config=config, llm=llm,
                      training_data={"tasks": [spec], "trajectories": 3, "horizon": 2, "eval_examples": 6})
    args = SimpleNamespace(budgets=[5, 10], eval_examples=6, test_examples=10)
    runs = [compare.run_one(m, spec, s, args, llm, planner, llm) for m in ("tap", "random", "demos")
            for s in (0, 1)]
    for run in runs:
        assert [p["budget"] for p in run["curve"]] == [1, 5, 10]
        assert run["chain_evals"] <= 10 and run["test_examples"] == 10
        assert run["curve"][0]["test"] == run["initial_test"]  # after one evaluation: the initial chain
    tap_run = runs[0]
    assert tap_run["setting"] == "per-task" and tap_run["collection_chain_evals"] == 9  # 3 trajectories x 3 chains
    table = compare.report(runs)
    assert "| add | tap | per-task | 2 |" in table and "(+9)" in table
    assert "| add | demos | baseline | 2 |" in table
    png = compare.plot(runs, tmp_path / "compare.png")
    assert png.exists() and png.stat().st_size > 1000


def test_compare_statistics(compare):
    m, h = compare.mean_ci([0.5, 0.7, 0.6])
    assert m == pytest.approx(0.6) and h == pytest.approx(4.303 * 0.1 / 3 ** 0.5)
    assert compare.mean_ci([0.4]) == (0.4, 0.0)
    run = {"curve": [{"budget": 1, "test": 0.2}, {"budget": 10, "test": 0.5}, {"budget": 25, "test": 0.7}]}
    assert compare.at(run, 24) == 0.5 and compare.at(run, 25) == 0.7
    assert compare.calls_to(run, 0.5) == 10 and compare.calls_to(run, 0.8) is None
    assert compare.grid([25, 50]) == [1, 5, 10, 15, 25, 35, 50]


def test_compare_refuses_to_mix_frozen_models(compare, tmp_path, capsys):
    import json

    base = {"task": "bigbench:arithmetic/1_digit_addition", "method": "random", "setting": "baseline", "budget": 5,
            "budgets": [5], "curve": [{"budget": 1, "test": 0.1}, {"budget": 5, "test": 0.2}], "initial_test": 0.1,
            "collection_chain_evals": 0, "proposer": {"requests": 0}, "seconds": 1.0}
    for seed, model in ((0, "smollm2@bfloat16"), (1, "smollm2@float32")):
        path = compare.run_path(tmp_path, base["task"], "random", seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**base, "seed": seed, "model": model}))
    argv = ["--report-only", "--out", str(tmp_path), "--tasks", base["task"], "--methods", "random",
            "--seeds", "0", "1"]
    assert compare.main(argv) == 2
    assert "different frozen LLMs (smollm2@bfloat16, smollm2@float32)" in capsys.readouterr().err
    assert compare.main([*argv, "--mixed-models"]) == 0


def test_compare_in_llm_calls_runs_the_sh_searches_and_baselines_alike(compare, tmp_path):
    from types import SimpleNamespace

    from tests.helpers import tiny_world_model, write_arithmetic_jsonl

    spec = write_arithmetic_jsonl(tmp_path / "add.jsonl", 80)
    llm = RuleLLM()
    from tap.planning import PlanConfig, Planner

    planner = Planner(tiny_world_model().eval(), llm=llm, config=PlanConfig(eval_examples=8, test_examples=0),
                      training_data={"tasks": ["other.jsonl"], "trajectories": 3, "horizon": 2, "eval_examples": 8})
    args = SimpleNamespace(budgets=[64, 128], eval_examples=8, test_examples=10, unit="calls")
    runs = [compare.run_one(m, spec, 0, args, llm, planner, llm)
            for m in ("tap", "tap-model", "random-sh", "random", "tap-readable")]
    for run in runs:
        assert run["unit"] == "calls" and run["example_evals"] <= 128
        assert [p["budget"] for p in run["curve"]] == [16, 32, 64, 96, 128]
        assert all(p["llm_calls_spent"] == p["budget"] for p in run["curve"])
    assert runs[0]["setting"] == "transfer" and runs[0]["collection_chain_evals"] == 0
    assert runs[2]["setting"] == "baseline"
    table = compare.report(runs)
    assert "calls to target" in table and "| add | tap | transfer | 1 |" in table
    assert "fluency: initial -> final" in table and all(set(r["fluency"]) == {"initial", "final"} for r in runs)
    assert "| add | random-sh | baseline | 1 |" in table
    assert runs[4]["method"] == "tap-readable" and runs[4]["config"]["settings"]["fluency_weight"] == 0.1
    assert runs[1]["config"]["settings"]["ranker"] == "model" and "| add | tap-model | transfer | 1 |" in table
    assert "Paired against random-sh" in table and "| add | random-sh | 1 | 0.000 | 0.000 |" in table
    paired = next(line for line in table.splitlines() if line.startswith("| add | tap | 1 | "))
    expected = runs[0]["curve"][-1]["test"] - runs[2]["curve"][-1]["test"]  # tap - random-sh, same seed, @128
    assert paired.split(" | ")[4] == f"{expected:.3f}" and "runs" in paired.split("|")[-2]
    assert "Planning cost per round" in table and runs[0]["planning"]["rounds"] > 0
    with pytest.raises(ValueError, match="budget units"):
        compare.report([*runs, {**runs[3], "unit": "evals"}])
    # a run that replayed every call from the cache is no measure of time: left out of minutes and planning
    replay = {**runs[0], "llm_requests": 100, "llm_calls": 0, "seconds": 0.01,
              "planning": {**runs[0]["planning"], "ratio": 99.0}}
    assert compare.timed(runs[0]) and not compare.timed(replay)
    table = compare.report([replay, *runs[1:]])
    row = next(line for line in table.splitlines() if line.startswith("| add | tap | transfer | 1 |"))
    assert "| replayed |" in row and "99.0" not in table
    # an ablation run to a smaller budget gets no cell past it (not its last chain repeated)
    short = {**runs[4], "budget": 64, "budgets": [64], "curve": [p for p in runs[4]["curve"] if p["budget"] <= 64]}
    table = compare.report([*runs[:4], short])
    row = next(line for line in table.splitlines() if line.startswith("| add | tap-readable | transfer | 1 |"))
    assert row.split(" | ")[6] == "-"  # @64 filled, @128 not
    paired = next(line for line in table.splitlines() if line.startswith("| add | tap-readable | 1 | "))
    assert paired.split(" | ")[3] != "-" and paired.split(" | ")[4] == "-"
    png = compare.plot(runs, tmp_path / "calls.png")
    assert png.exists()
