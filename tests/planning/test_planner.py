"""The planner (the Python API) and plan.py on a tiny world model and a rule-based fake LLM: budgets, leakage,
replay, determinism, the test report, errors, outputs, every preset through the CLI."""

from __future__ import annotations

import json
import random

import pytest
import torch

from tap.chains import Chain, edit_space, initial_chain, replay
from tap.errors import EditError, TapError
from tap.planning import PRESETS, GradientConfig, GradientPlanner, PlanConfig, Planner
from tap.planning import cli as plan_cli
from tap.planning.halving import SuccessiveHalvingSearch
from tap.search import SearchResult
from tests.helpers import RuleLLM, arithmetic_task, save_tiny_world_model, tiny_world_model

SMALL = {"menu": 16, "enter": 4}


def _planner(llm=None, preset: str = "default", **config) -> Planner:
    config = {"eval_examples": 8, "test_examples": 8, **config}
    return Planner(None if preset == "random" else tiny_world_model(), llm=llm or RuleLLM(),
                   config=PlanConfig(preset=preset, settings=dict(SMALL), **config))


@pytest.fixture(scope="module")
def task():
    return arithmetic_task(60)


def _prompts(llm: RuleLLM) -> list[str]:
    return [p for b in llm.generate_batches for p in b] + [p for b in llm.score_batches for p, _ in b]


@pytest.mark.parametrize("preset", ["default", "random"])
@pytest.mark.parametrize("calls", [8, 30, 61])
def test_call_budget_is_never_exceeded_and_nests(task, preset, calls):
    result = _planner(preset=preset, test_examples=0).optimize(task, budget_calls=calls, seed=0, progress=False)
    assert result.costs["search"]["example_evals"] <= calls
    assert all(r.calls <= calls for r in result.records)
    long = _planner(preset=preset, test_examples=0).optimize(task, budget_calls=120, seed=0, progress=False)
    chain, edits, acc = long.best_at(calls=calls)
    assert (result.final_chain, result.edits, result.final_search["accuracy"]) == (chain, edits, acc)
    both = _planner(preset=preset, test_examples=0).optimize(task, budget=2, budget_calls=calls, seed=0,
                                                              progress=False)
    assert both.costs["search"]["chain_evals"] <= 2 and both.costs["search"]["example_evals"] <= calls


def test_induced_instructions_join_the_planners_edit_space(task):
    from tap.chains.induce import Induction

    induction = Induction(("Add the two numbers and give the sum.",), "proposer", 1, 1, 0)
    result = _planner(preset="random", test_examples=0).optimize(task, budget_calls=200, seed=0, progress=False,
                                                                 induction=induction)
    assert result.costs["induction"]["induced"] == 1 and result.costs["induction"]["requests"] == 1
    verified = [e for r in result.records for e in r.edits if e["op"] == "instruction_edit"]
    assert any(e["payload"] == induction.instructions[0] for e in verified)


def test_search_never_touches_test_examples(task):
    llm = RuleLLM()
    result = _planner(llm, test_examples=0).optimize(task, budget_calls=80, seed=0, progress=False)
    prompts = _prompts(llm)
    assert prompts and result.costs["test"]["chain_evals"] == 0
    for ex in task.test:
        assert not any(ex.input in p for p in prompts), ex.input
    train = {ex.uid for ex in task.train}  # demonstrations the search added come from train only
    assert all(d.uid in train for d in result.final_chain.demos)


def test_the_test_split_is_scored_once_per_distinct_chain_and_never_charged(task):
    llm = RuleLLM()
    result = _planner(llm).optimize(task, budget_calls=120, seed=0, progress=False)
    assert result.final_chain != result.initial_chain
    assert result.costs["test"]["chain_evals"] == 2 and result.costs["test"]["distinct_chains"] == 2
    assert set(result.test) == {"initial", "final"} and result.test["final"]["n"] == 8
    test_inputs = {ex.input for ex in task.test}
    assert all(any(t in p for t in test_inputs) for b in llm.generate_batches[-2:] for p in b)
    # a search that accepts nothing scores its one chain once
    same = _planner(RuleLLM()).optimize(task, budget_calls=8, seed=0, progress=False)
    assert same.final_chain == same.initial_chain
    assert same.costs["test"]["chain_evals"] == 1 and same.test["initial"] == same.test["final"]


def test_trajectory_replays_to_the_final_chain_and_round_trips(task, tmp_path):
    result = _planner().optimize(task, budget_calls=150, seed=1, progress=False, out_dir=tmp_path / "run")
    assert replay(result.initial_chain, result.edits) == result.final_chain
    loaded = SearchResult.load(tmp_path / "run")
    assert loaded.check_replay() == result.final_chain
    assert Chain.from_json((tmp_path / "run" / "final_chain.json").read_text()) == result.final_chain
    assert "{question}" in (tmp_path / "run" / "final_prompt.txt").read_text()
    assert "## Final chain" in (tmp_path / "run" / "plan.md").read_text()
    assert loaded.config["preset"] == "default" and loaded.config["settings"]["menu"] == 16


def test_same_seed_same_result(task):
    def run(seed):
        out = _planner(test_examples=0).optimize(task, budget_calls=100, seed=seed, progress=False).to_dict()
        out["costs"]["search"].pop("seconds")
        out["costs"].pop("planning")
        for r in out["config"]["rounds"]:
            r.pop("planning_seconds")
        return out

    assert run(3) == run(3)
    assert run(3)["records"] != run(4)["records"]


def test_the_api_is_the_search_built_directly_with_the_presets_settings(task):
    from tests.planning.test_halving import _strip

    wm = tiny_world_model()
    for preset in PRESETS:
        planner = Planner(None if preset == "random" else wm, llm=RuleLLM(),
                          config=PlanConfig(preset=preset, settings=SMALL, eval_examples=8, test_examples=0))
        result = planner.optimize(task, budget_calls=60, seed=1, progress=False)
        settings = {**result.config["settings"]}
        direct = SuccessiveHalvingSearch(RuleLLM(), task, None, 1, budget_calls=60, eval_examples=8, progress=False,
                                         world_model=None if preset == "random" else wm, **settings).run()
        assert _strip(result)["records"] == _strip(direct)["records"], preset


def test_gradient_planner_prefers_what_the_world_model_rewards():
    wm = tiny_world_model()
    chain = initial_chain("Add the two numbers.")
    edits = edit_space(arithmetic_task(40)).propose(chain, 6, random.Random(0))
    state = wm.observe(wm.encode_chains([chain], "Add."))
    actions, scales = wm.embed_edits(edits)
    scores = GradientPlanner(wm, GradientConfig(plan_length=1, steps=20, restarts=2, uncertainty_penalty=0.0)).plan(
        state, actions, scales, generator=torch.Generator().manual_seed(0))
    # with a horizon of one, a candidate's planned return is exactly the reward predicted after it
    after = wm.imagine(state.__class__({k: v.expand(len(edits), -1) for k, v in state.items()}),
                       actions.unsqueeze(1), scales.unsqueeze(1))[0]
    assert torch.allclose(scores.returns, wm.reward(after), atol=1e-5)
    # ascent puts the most first-step weight on the best candidate
    assert int(scores.first_weights.argmax()) == int(scores.returns.argmax())


def test_proposals_are_distinct_valid_and_cover_the_scales(task):
    chain = initial_chain(task.description)
    edits = edit_space(task).propose(chain, 9, random.Random(0))
    nexts = {replay(chain, [e]).to_json() for e in edits}
    assert len(nexts) == len(edits) == 9
    assert {e.scale for e in edits} == {"instruction", "segment", "token"}
    with pytest.raises(EditError, match="at least one candidate"):
        edit_space(task).propose(chain, 0, random.Random(0))


def test_bad_settings_fail_clearly(task):
    llm = RuleLLM()
    with pytest.raises(TapError, match="budget"):
        _planner(llm).optimize(task, seed=0, progress=False)
    with pytest.raises(TapError, match="eval_examples"):
        _planner(llm, eval_examples=0)
    with pytest.raises(TapError, match="unknown preset 'sh'"):
        _planner(llm, preset="sh")
    with pytest.raises(TapError, match="unknown search setting 'refine_steps'"):
        Planner(tiny_world_model(), llm=llm, config=PlanConfig(settings={"refine_steps": 2}))
    single = ["compose=0", "compose_hedge=false", "adapt=0"]
    with pytest.raises(TapError, match="'policy' ranker needs an imagination-policy"):
        Planner(tiny_world_model(), llm=llm, config=PlanConfig(preset="model", settings=["ranker=policy", *single]))
    with pytest.raises(TapError, match="'gradient' ranker scores single edits.*set compose=0 compose_hedge=false "
                                       "adapt=0 op_bonus=false"):
        Planner(tiny_world_model(), llm=llm, config=PlanConfig(settings=["ranker=gradient"]))
    with pytest.raises(TapError, match="needs a world model"):
        Planner(None, llm=llm, config=PlanConfig(preset="random")).optimize(task, budget_calls=8, preset="default")
    assert llm.generated == 0 and llm.scored == 0


def test_the_gradient_ranker_runs_inside_the_one_search(task):
    planner = Planner(tiny_world_model(), llm=RuleLLM(), config=PlanConfig(
        preset="model", settings={**SMALL, "ranker": "gradient", "compose": 0, "compose_hedge": False, "adapt": 0.0},
        eval_examples=8, test_examples=0))
    result = planner.optimize(task, budget_calls=60, seed=0, progress=False)
    assert result.config["settings"]["ranker"] == "gradient" and result.costs["search"]["example_evals"] <= 60
    assert any(r.predicted is not None for r in result.records)


def test_from_checkpoint_loads_a_world_model_and_accounts_for_its_data(task, tmp_path):
    path = save_tiny_world_model(tmp_path / "wm.ckpt", tasks=[task.name])
    planner = Planner.from_checkpoint(tmp_path, llm=RuleLLM(), config=PlanConfig(settings=SMALL, eval_examples=4,
                                                                                  test_examples=0))
    result = planner.optimize(task, budget_calls=20, progress=False)
    assert result.checkpoint == str(path)
    collection = result.costs["collection"]
    assert collection["task_in_training_data"] and collection["chain_evals_this_task"] == 4 * 4
    assert collection["llm_requests_this_task"] == 4 * 4 * 6 * 2  # generate mode: reply + gold score per example
    other = planner.optimize(arithmetic_task(40, name="other-task"), budget_calls=20, progress=False)
    assert other.costs["collection"]["chain_evals_this_task"] == 0  # transfer: no data of this task


def test_unwritable_output_folder_fails_before_any_call(task, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    llm = RuleLLM()
    with pytest.raises(TapError, match=r"cannot write to the folder .*file/out .*--out.*nothing was paid"):
        _planner(llm).optimize(task, budget_calls=30, seed=0, progress=False, out_dir=blocker / "out")
    assert llm.generated == 0 and llm.scored == 0


def test_a_damaged_checkpoint_gets_a_clear_error(tmp_path):
    bad = tmp_path / "random.ckpt"
    bad.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(TapError, match="damaged or not a checkpoint written by train.py"):
        Planner.from_checkpoint(bad)


def _plan(argv, capsys):
    code = plan_cli.main(argv)
    return code, capsys.readouterr()


def test_plan_cli_errors_name_the_problem(tmp_path, capsys):
    code, out = _plan(["--task", "ii:sentiment", "--checkpoint", str(tmp_path / "missing")], capsys)
    assert code == 2 and "does not exist" in out.err and "train" in out.err
    wrong = tmp_path / "enc.ckpt"
    torch.save({"tap_system": "ContrastiveEncoder", "state_dict": {}, "hyper_parameters": {}}, wrong)
    code, out = _plan(["--task", "ii:sentiment", "--checkpoint", str(wrong)], capsys)
    assert code == 2 and "ContrastiveEncoder checkpoint" in out.err and "WorldModel or ImaginationPolicy" in out.err
    ckpt = save_tiny_world_model(tmp_path / "wm.ckpt")
    code, out = _plan(["--task", str(tmp_path / "no_such_task.jsonl"), "--checkpoint", str(ckpt)], capsys)
    assert code == 2 and "no_such_task.jsonl" in out.err
    code, out = _plan(["--task", "ii:sentiment", "--checkpoint", str(ckpt), "--set", "carry=2"], capsys)
    assert code == 2 and "unknown search setting 'carry'" in out.err and "compose" in out.err
    code, out = _plan(["--task", "ii:sentiment", "--checkpoint", str(ckpt), "--set", "enter=many"], capsys)
    assert code == 2 and "'enter' takes a int" in out.err
    code, out = _plan(["--task", "ii:sentiment", "--checkpoint", str(ckpt), "--set", "ranker=policy", "adapt=0",
                       "compose=0", "op_bonus=false", "compose_hedge=false"], capsys)
    assert code == 2 and "configs/policy.yaml" in out.err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out = _plan(["--task", "ii:sentiment", "--checkpoint", str(ckpt), "--out", str(blocker / "o")], capsys)
    assert code == 2 and "cannot write to the folder" in out.err and "--out" in out.err
    bad_chain = tmp_path / "chain.json"
    bad_chain.write_text('{"instruction": "Go.", "steps": "Think."}')
    code, out = _plan(["--task", "ii:sentiment", "--checkpoint", str(ckpt), "--initial", str(bad_chain)], capsys)
    assert code == 2 and "'steps' must be a list of texts" in out.err
    bad_chain.write_bytes(b"\xff\xfe")
    code, out = _plan(["--task", "ii:sentiment", "--checkpoint", str(ckpt), "--initial", str(bad_chain)], capsys)
    assert code == 2 and "chain.json" in out.err
    with pytest.raises(SystemExit):
        plan_cli.parse_args(["--task", "ii:sentiment", "--preset", "prior-sh"])
    assert "invalid choice: 'prior-sh'" in capsys.readouterr().err


@pytest.mark.parametrize("preset", list(PRESETS))
def test_plan_cli_runs_every_preset_on_a_task_file(tmp_path, capsys, monkeypatch, preset):
    from tests.helpers import write_arithmetic_jsonl

    task_file = write_arithmetic_jsonl(tmp_path / "add.jsonl", 60)
    ckpt = save_tiny_world_model(tmp_path / "wm.ckpt")
    monkeypatch.setattr("tap.llm.load_llm", lambda *a, **k: RuleLLM())
    out_dir = tmp_path / "out"
    code, out = _plan(["--task", task_file, "--checkpoint", str(ckpt), "--preset", preset, "--budget-calls", "60",
                       "--eval-examples", "8", "--set", "menu=16", "enter=4", "--test-examples", "6",
                       "--out", str(out_dir), "--quiet"], capsys)
    assert code == 0, out.err
    saved = json.loads((out_dir / "plan.json").read_text())
    assert saved["config"]["preset"] == preset and saved["config"]["settings"]["enter"] == 4
    assert saved["config"]["settings"] == {**saved["config"]["settings"], **PRESETS[preset]}
    assert (saved["costs"]["fluency"]["requests"] > 0) == (preset == "readable")  # scored apart from the budget
    assert "== verified chains" in out.out and "held-out test accuracy" in out.out and "set {'menu': 16" in out.out
    assert ("predicted" in out.out) == (preset != "random")
    summary = json.loads(out.out.strip().splitlines()[-1])
    assert summary["example_evals"] <= 60 and set(summary["test"]) == {"initial", "final"}
    assert summary["preset"] == preset and set(summary["fluency"]) == {"initial", "final"}
    assert {p.name for p in out_dir.iterdir()} >= {"plan.json", "plan.md", "final_chain.json", "final_prompt.txt"}
    assert any(p.name.startswith("events.out.tfevents") for p in out_dir.iterdir())  # TensorBoard
    # the final chain loads back and can start another search
    code, out = _plan(["--task", task_file, "--checkpoint", str(ckpt), "--preset", preset, "--budget-calls", "20",
                       "--initial", str(out_dir / "final_chain.json"), "--out", str(tmp_path / "again"), "--quiet",
                       "--test-examples", "0", "--eval-examples", "8", "--set", "menu=8", "enter=4"], capsys)
    assert code == 0, out.err
    again = SearchResult.load(tmp_path / "again")
    assert again.initial_chain == Chain.from_json((out_dir / "final_chain.json").read_text())


def test_a_world_model_trained_on_another_frozen_llm_is_refused(tmp_path):
    from tap.planning.planner import check_frozen_model

    ckpt = save_tiny_world_model(tmp_path / "wm.ckpt")  # trained on the answers of "rule"
    with pytest.raises(TapError, match="trained on the answers of rule, not qwen2.5-coder-0.5b.*--preset random"):
        Planner.from_checkpoint(ckpt, model="qwen2.5-coder-0.5b")
    assert Planner.from_checkpoint(ckpt, model="rule").model == "rule"
    assert Planner.from_checkpoint(ckpt).model == "rule"  # by default: the one it was trained against
    check_frozen_model("SmolLM2-135M-Instruct", "smollm2")  # aliases of one offline model
    check_frozen_model("openai:smol@http://127.0.0.1:8000", "smollm2")  # a server is only noted
    Planner(None, config=PlanConfig(preset="random"), model="qwen2.5-coder-0.5b")  # random needs no world model


def test_the_shipped_world_model_is_small_and_named_per_frozen_llm():
    from tap.systems.checkpoints import PRETRAINED, SHIPPED_WORLD_MODELS, shipped_world_model

    path = shipped_world_model("smollm2")
    assert path == shipped_world_model("SmolLM2-135M-Instruct") and path.parent == PRETRAINED
    assert path.stat().st_size < 10 * 2**20  # trainable weights and buffers only: the MiniLM backbone by reference
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    assert ckpt["tap_system"] == "WorldModel" and ckpt["tap_pretrained"]  # the backbone by reference
    assert ckpt["datamodule_hyper_parameters"]["model"] == "smollm2" and set(SHIPPED_WORLD_MODELS) == {
        "smollm2-135m-instruct-q4_1"}
    with pytest.raises(TapError, match="no world model ships for the frozen LLM 'qwen2.5-coder-0.5b'.*--preset|random"):
        shipped_world_model("qwen2.5-coder-0.5b")
