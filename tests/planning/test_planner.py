"""The planner on a tiny world model and a rule-based fake LLM: budget, leakage, replay, determinism,
errors, outputs."""

from __future__ import annotations

import json
import random

import pytest
import torch

from tap.chains import Chain, edit_space, initial_chain, replay
from tap.errors import EditError, TapError
from tap.planning import GradientConfig, GradientPlanner, PlanConfig, Planner, PlanResult
from tap.planning import cli as plan_cli
from tests.helpers import RuleLLM, arithmetic_task, save_tiny_world_model, tiny_world_model

FAST = GradientConfig(plan_length=2, steps=3, restarts=2)


def _planner(llm=None, **overrides) -> Planner:
    config = PlanConfig(method="gradient", candidates=6, gradient=FAST, eval_examples=6, test_examples=8,
                        refine_steps=2)
    for k, v in overrides.items():
        setattr(config, k, v)
    return Planner(tiny_world_model(), config=config, llm=llm or RuleLLM())


@pytest.fixture(scope="module")
def task():
    return arithmetic_task(60)


def _prompts(llm: RuleLLM) -> list[str]:
    return [p for b in llm.generate_batches for p in b] + [p for b in llm.score_batches for p, _ in b]


@pytest.mark.parametrize("method", ["gradient", "random"])
@pytest.mark.parametrize("budget", [1, 4, 9])
def test_budget_is_never_exceeded(task, method, budget):
    llm = RuleLLM()
    result = _planner(llm, test_examples=0).optimize(task, budget=budget, seed=0, method=method, progress=False)
    assert result.costs["search"]["chain_evals"] <= budget
    assert len(llm.generate_batches) == result.costs["search"]["chain_evals"]  # one generate batch per evaluation
    assert len(result.records) == result.costs["search"]["chain_evals"]  # the initial chain's record first
    assert result.records[0].note == "initial" and result.records[0].accepted
    assert all(r.chain_evals <= budget for r in result.records)


@pytest.mark.parametrize("calls", [6, 20, 33])
def test_call_budget_is_never_exceeded_and_nests(task, calls):
    result = _planner(RuleLLM(), test_examples=0).optimize(task, budget_calls=calls, seed=0, method="random",
                                                            progress=False)
    search = result.costs["search"]
    assert search["example_evals"] <= calls and search["example_evals"] > calls - 6  # 6 examples per evaluation
    assert search["example_evals"] == 6 * search["chain_evals"]
    assert all(r.example_evals <= calls for r in result.records)
    long = _planner(RuleLLM(), test_examples=0).optimize(task, budget_calls=60, seed=0, method="random",
                                                          progress=False)
    chain, edits, acc = long.best_at(calls=calls)
    assert (result.final_chain, result.edits, result.final_search["accuracy"]) == (chain, edits, acc)
    assert long.calls_at(long.costs["search"]["chain_evals"]) == long.costs["search"]["example_evals"]
    assert long.calls_at(2) == 12 and long.calls_at(1) == 6  # chain evaluations of 6 examples
    both = _planner(RuleLLM(), test_examples=0).optimize(task, budget=2, budget_calls=calls, seed=0,
                                                          method="random", progress=False)
    assert both.costs["search"]["chain_evals"] <= 2 and both.costs["search"]["example_evals"] <= calls


def test_induced_instructions_join_the_planners_edit_space(task):
    from tap.chains.induce import Induction

    induction = Induction(("Add the two numbers and give the sum.",), "proposer", 1, 1, 0)
    result = _planner(RuleLLM(), test_examples=0, candidates=40).optimize(
        task, budget=6, seed=0, method="random", progress=False, induction=induction)
    assert result.costs["induction"]["induced"] == 1 and result.costs["induction"]["requests"] == 1
    payloads = [r.edit["payload"] for r in result.records if r.edit and r.edit["op"] == "instruction_edit"]
    assert payloads  # with 40 candidates per step, some instruction edits are verified


def test_search_never_touches_test_examples(task):
    llm = RuleLLM()
    result = _planner(llm, test_examples=0).optimize(task, budget=8, seed=0, progress=False)
    prompts = _prompts(llm)
    assert prompts and result.costs["test"]["chain_evals"] == 0
    for ex in task.test:
        assert not any(ex.input in p for p in prompts), ex.input
    # demonstrations the search added come from train only
    train = {ex.uid for ex in task.train}
    assert all(d.uid in train for d in result.final_chain.demos)


def test_test_split_is_reported_apart_and_not_charged(task):
    llm = RuleLLM()
    result = _planner(llm).optimize(task, budget=5, seed=0, progress=False)
    assert result.costs["search"]["chain_evals"] <= 5
    assert result.costs["test"]["chain_evals"] == 2
    assert set(result.test) == {"initial", "final"} and result.test["final"]["n"] == 8
    test_inputs = {ex.input for ex in task.test}
    # the last two generate batches are the test evaluations and only they hold test questions
    assert all(any(t in p for t in test_inputs) for b in llm.generate_batches[-2:] for p in b)


def test_trajectory_replays_to_the_final_chain_and_round_trips(task, tmp_path):
    result = _planner().optimize(task, budget=10, seed=1, progress=False, out_dir=tmp_path / "run")
    assert replay(result.initial_chain, result.edits) == result.final_chain
    assert len(result.edits) == sum(r.accepted for r in result.records) - 1  # the initial chain is accepted first
    loaded = PlanResult.load(tmp_path / "run")
    assert loaded.check_replay() == result.final_chain
    assert Chain.from_json((tmp_path / "run" / "final_chain.json").read_text()) == result.final_chain
    assert "{question}" in (tmp_path / "run" / "final_prompt.txt").read_text()
    md = (tmp_path / "run" / "plan.md").read_text()
    assert "## Verified edits" in md and "## Final chain" in md
    assert (tmp_path / "run" / "verified").exists()  # what was measured goes back into the data
    # the accepted chain is never worse on the search examples than the initial one
    assert (result.final_search["accuracy"], result.final_search["dense"]) >= (
        result.initial_search["accuracy"], result.initial_search["dense"])


def test_same_seed_same_result_and_budgets_nest(task):
    def run(budget, seed=3):
        out = _planner().optimize(task, budget=budget, seed=seed, progress=False).to_dict()
        out["costs"]["search"].pop("seconds")
        return out

    a, b = run(9), run(9)
    assert a == b
    # the search is budget-agnostic: a smaller budget is exactly a prefix of a larger one
    short, long = run(5), PlanResult.from_dict(run(9))
    assert [r for r in short["records"]] == [r for r in run(9)["records"] if r["evals"] <= 5]
    chain, edits, _ = long.best_at(5)
    assert chain.to_dict() == short["final_chain"] and edits == short["edits"]


def test_refinement_changes_the_world_model_and_can_be_switched_off(task):
    planner = _planner()
    before = {k: v.clone() for k, v in planner.wm.state_dict().items()}
    result = planner.optimize(task, budget=6, seed=0, progress=False)
    assert result.costs["refinement"]["steps"] > 0
    changed = any(not torch.equal(before[k], v) for k, v in planner.wm.state_dict().items())
    assert changed
    # the next run starts again from the checkpoint's weights
    off = _planner(refine_steps=0)
    result_off = off.optimize(task, budget=6, seed=0, progress=False)
    assert result_off.costs["refinement"]["steps"] == 0
    assert all(torch.equal(before[k], v) for k, v in off.wm.state_dict().items())


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
    with pytest.raises(TapError, match="budget"):
        _planner().optimize(task, budget=0, progress=False)
    with pytest.raises(TapError, match="unknown planning method"):
        _planner().optimize(task, budget=3, method="anneal", progress=False)
    with pytest.raises(TapError, match="policy checkpoint"):
        _planner(method="policy")
    with pytest.raises(TapError, match="unknown planner setting"):
        Planner.from_checkpoint("whatever", candidatez=3)
    with pytest.raises(TapError, match="adapt.*must be >= 0"):
        Planner(None, config=PlanConfig(method="random-sh", adapt=-0.1))
    with pytest.raises(TapError, match="applies to methods 'sh' and 'prior-sh', not 'random-sh'"):
        Planner(None, config=PlanConfig(method="random-sh", adapt=0.1)).optimize(task, budget=3, progress=False)
    with pytest.raises(TapError, match="carry"):
        Planner(None, config=PlanConfig(method="random-sh", carry=8))  # enter is 8
    with pytest.raises(TapError, match="random-sh has no ranker"):
        Planner(None, config=PlanConfig(method="random-sh", hedge=True))
    with pytest.raises(TapError, match="hedge is a setting of the successive-halving searches"):
        Planner(None, config=PlanConfig(method="random", hedge=True))
    with pytest.raises(TapError, match="hedge needs enter >= 2"):
        Planner(None, config=PlanConfig(method="prior-sh", hedge=True, enter=1))
    with pytest.raises(TapError, match="compose .* must be >= 0"):
        Planner(None, config=PlanConfig(method="random-sh", compose=-2))
    with pytest.raises(TapError, match="compose is a setting of the sh, prior-sh and random-sh searches"):
        Planner(None, config=PlanConfig(method="gradient-sh", compose=4))
    with pytest.raises(TapError, match="hedge_window .* only with the hedge on"):
        Planner(None, config=PlanConfig(method="prior-sh", hedge=False, hedge_window=1))
    with pytest.raises(TapError, match="hedge_window"):
        Planner(None, config=PlanConfig(method="random-sh", hedge_window=1)).optimize(task, budget=3, progress=False)
    with pytest.raises(TapError, match="compose_hedge .* needs compose >= 2"):
        Planner(None, config=PlanConfig(method="prior-sh", compose=0, compose_hedge=True))
    with pytest.raises(TapError, match="compose_hedge"):
        Planner(None, config=PlanConfig(method="random-sh", compose=4, compose_hedge=True))
    with pytest.raises(TapError, match="hedge_on .* one of"):
        Planner(None, config=PlanConfig(method="prior-sh", hedge_on="top"))
    with pytest.raises(TapError, match="early_accept .* level of a sign test"):
        Planner(None, config=PlanConfig(method="prior-sh", early_accept=1.5))
    with pytest.raises(TapError, match="early_accept is a setting of the successive-halving searches"):
        Planner(None, config=PlanConfig(method="gradient", early_accept=0.05))
    with pytest.raises(TapError, match="lazy_initial is a setting of the successive-halving searches"):
        Planner(None, config=PlanConfig(method="gradient", lazy_initial=True))
    with pytest.raises(TapError, match="op_bonus .* needs adapt > 0"):
        Planner(None, config=PlanConfig(method="random-sh", op_bonus=True))
    with pytest.raises(TapError, match="op_bonus .* needs adapt > 0"):
        Planner(None, config=PlanConfig(method="prior-sh", adapt=0.0, op_bonus=True))
    with pytest.raises(TapError, match="batch_bonus .* needs op_bonus"):
        Planner(None, config=PlanConfig(method="sh", batch_bonus=True))  # sh has no op_bonus unless asked
    with pytest.raises(TapError, match="batch_bonus .* needs op_bonus"):
        Planner(None, config=PlanConfig(method="prior-sh", op_bonus=False, batch_bonus=True))
    with pytest.raises(TapError, match="fluency_top .* both >= 0"):
        Planner(None, config=PlanConfig(method="prior-sh", fluency_weight=0.1, fluency_top=-1))
    with pytest.raises(TapError, match="fluency_weight .* >= 0"):
        Planner(None, config=PlanConfig(method="prior-sh", fluency_weight=-0.1))
    with pytest.raises(TapError, match="fluency_weight re-ranks a ranker's candidates .* not 'random-sh'"):
        Planner(None, config=PlanConfig(method="random-sh", fluency_weight=0.1))
    with pytest.raises(TapError, match="fluency_weight .* not 'gradient'"):
        Planner(None, config=PlanConfig(method="gradient", fluency_weight=0.1))


def test_the_default_search_composes_hedged_plans_races_adapts_explores_operations_starts_lazily():
    cfg = PlanConfig()
    assert cfg.method == "prior-sh" and cfg.hedge_for("prior-sh")
    for method in ("prior-sh", "sh"):  # the ranked searches compose 4-edit plans, hedged, race, and correct the ranker
        assert (cfg.compose_for(method), cfg.compose_hedge_for(method), cfg.early_accept_for(method),
                cfg.adapt_for(method)) == (4, True, 0.05, 0.1)
    # random-sh keeps the same acceptance and nothing of a ranker: the baseline of the benchmark's rows
    assert (cfg.compose_for("random-sh"), cfg.compose_hedge_for("random-sh"), cfg.hedge_for("random-sh"),
            cfg.adapt_for("random-sh")) == (0, False, False, 0.0)
    assert cfg.early_accept_for("random-sh") == 0.05
    assert all(cfg.lazy_initial_for(m) for m in ("prior-sh", "sh", "random-sh", "gradient-sh", "policy-sh"))
    assert cfg.op_bonus_for("prior-sh") and not any(cfg.op_bonus_for(m) for m in ("sh", "random-sh", "gradient"))
    assert not PlanConfig(adapt=0.0).op_bonus_for("prior-sh")  # no correction, no uncertainty of it to add
    assert not any(cfg.batch_bonus_for(m) for m in ("prior-sh", "sh", "random-sh"))  # a setting, off by default
    assert not cfg.lazy_initial_for("gradient") and not PlanConfig(lazy_initial=False).lazy_initial_for("prior-sh")
    assert (cfg.compose_for("gradient-sh"), cfg.early_accept_for("gradient-sh"), cfg.adapt_for("gradient-sh")) == (
        0, 0.05, 0.0)  # its ranker predicts no accuracy change to correct
    assert (cfg.compose_for("gradient"), cfg.early_accept_for("gradient")) == (0, 0.0)  # verify-top-k: no halving
    off = PlanConfig(compose=0, early_accept=0.0, adapt=0.0)  # each is a setting: off when asked
    assert (off.compose_for("prior-sh"), off.compose_hedge_for("prior-sh"), off.early_accept_for("prior-sh"),
            off.adapt_for("prior-sh")) == (0, False, 0.0, 0.0)
    assert PlanConfig(enter=2).compose_for("prior-sh") == 0  # too few entrants for a composed, ranked and random one


def test_from_checkpoint_loads_a_world_model_and_accounts_for_its_data(task, tmp_path):
    path = save_tiny_world_model(tmp_path / "wm.ckpt", tasks=[task.name])
    planner = Planner.from_checkpoint(tmp_path, llm=RuleLLM(), candidates=4, gradient=FAST, eval_examples=4,
                                      test_examples=0)
    result = planner.optimize(task, budget=3, progress=False)
    assert result.checkpoint == str(path)
    collection = result.costs["collection"]
    assert collection["task_in_training_data"] and collection["chain_evals_this_task"] == 4 * 4
    assert collection["llm_requests_this_task"] == 4 * 4 * 6 * 2  # generate mode: reply + gold score per example
    other = planner.optimize(arithmetic_task(40, name="other-task"), budget=2, progress=False)
    assert other.costs["collection"]["chain_evals_this_task"] == 0  # transfer: no data of this task


def _plan(argv, capsys):
    code = plan_cli.main(argv)
    return code, capsys.readouterr()


def test_plan_cli_errors_name_the_problem(tmp_path, capsys):
    code, out = _plan(["--task", "x.jsonl", "--checkpoint", str(tmp_path / "missing")], capsys)
    assert code == 2 and "does not exist" in out.err and "train" in out.err
    wrong = tmp_path / "enc.ckpt"
    torch.save({"tap_system": "ContrastiveEncoder", "state_dict": {}, "hyper_parameters": {}}, wrong)
    code, out = _plan(["--task", "x.jsonl", "--checkpoint", str(wrong)], capsys)
    assert code == 2 and "ContrastiveEncoder checkpoint" in out.err and "WorldModel or ImaginationPolicy" in out.err
    ckpt = save_tiny_world_model(tmp_path / "wm.ckpt")
    code, out = _plan(["--task", str(tmp_path / "no_such_task.jsonl"), "--checkpoint", str(ckpt)], capsys)
    assert code == 2 and "no_such_task.jsonl" in out.err
    code, out = _plan(["--task", str(tmp_path / "t.jsonl"), "--checkpoint", str(ckpt), "--method", "policy"], capsys)
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


def test_plan_cli_end_to_end_on_a_task_file(tmp_path, capsys, monkeypatch):
    from tests.helpers import write_arithmetic_jsonl

    task_file = write_arithmetic_jsonl(tmp_path / "add.jsonl", 60)
    ckpt = save_tiny_world_model(tmp_path / "wm.ckpt")
    monkeypatch.setattr(Planner, "llm", property(lambda self: RuleLLM()))
    out_dir = tmp_path / "out"
    code, out = _plan(["--task", task_file, "--checkpoint", str(ckpt), "--method", "gradient", "--budget", "6",
                       "--seed", "0", "--candidates", "4", "--grad-steps", "2", "--horizon", "2",
                       "--eval-examples", "6", "--test-examples", "6", "--out", str(out_dir), "--quiet"], capsys)
    assert code == 0, out.err
    assert "== initial chain ==" in out.out and "== final chain ==" in out.out
    assert "held-out test accuracy" in out.out and "predicted" in out.out and "measured" in out.out
    summary = json.loads(out.out.strip().splitlines()[-1])
    assert summary["chain_evals"] <= 6 and set(summary["test"]) == {"initial", "final"}
    assert {p.name for p in out_dir.iterdir()} >= {"plan.json", "plan.md", "final_chain.json", "final_prompt.txt"}
    assert any(p.name.startswith("events.out.tfevents") for p in out_dir.iterdir())
    # the final chain loads back and can start another search
    code, out = _plan(["--task", task_file, "--checkpoint", str(ckpt), "--method", "gradient", "--budget", "2",
                       "--initial",
                       str(out_dir / "final_chain.json"), "--out", str(tmp_path / "again"), "--quiet",
                       "--test-examples", "0", "--candidates", "3", "--grad-steps", "1"], capsys)
    assert code == 0, out.err
    again = PlanResult.load(tmp_path / "again")
    assert again.initial_chain == Chain.from_json((out_dir / "final_chain.json").read_text())


def test_live_lines_agree_with_the_summary(task):
    """``on_record`` (plan.py's live lines) runs after each step's accept decision."""
    seen = []
    result = _planner(RuleLLM(), test_examples=0).optimize(task, budget=12, seed=0, method="random", progress=False,
                                                           on_record=lambda r: seen.append((r.edit, r.accepted)))
    assert seen == [(r.edit, r.accepted) for r in result.records[1:]]  # every verification (not the initial chain)
    assert any(accepted for _, accepted in seen)


def test_unwritable_output_folder_fails_before_any_call(task, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    llm = RuleLLM()
    with pytest.raises(TapError, match=r"cannot write to the folder .*file/out .*--out.*nothing was paid"):
        _planner(llm).optimize(task, budget=3, seed=0, method="random", progress=False, out_dir=blocker / "out")
    assert llm.generated == 0 and llm.scored == 0


def test_a_damaged_checkpoint_gets_a_clear_error(tmp_path):
    bad = tmp_path / "random.ckpt"
    bad.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(TapError, match="damaged or not a checkpoint written by train.py"):
        Planner.from_checkpoint(bad)


@pytest.mark.parametrize("method", ["sh", "gradient-sh", "prior-sh", "random-sh"])
def test_plan_cli_runs_the_successive_halving_search(tmp_path, capsys, monkeypatch, method):
    from tests.helpers import write_arithmetic_jsonl

    task_file = write_arithmetic_jsonl(tmp_path / "add.jsonl", 60)
    ckpt = save_tiny_world_model(tmp_path / "wm.ckpt")
    monkeypatch.setattr("tap.llm.load_llm", lambda *a, **k: RuleLLM())
    out_dir = tmp_path / "out"
    code, out = _plan(["--task", task_file, "--checkpoint", str(ckpt), "--method", method, "--budget-calls", "60",
                       "--eval-examples", "8", "--menu", "16", "--enter", "4", "--refine-steps", "1",
                       "--test-examples", "6", "--carry", "1", "--out", str(out_dir), "--quiet",
                       *(["--no-hedge"] if method == "gradient-sh" else ["--compose", "2"]),
                       *(["--compose-hedge", "--hedge-window", "1", "--hedge-on", "reached"]
                         if method in ("sh", "prior-sh") else ["--no-lazy-initial"]),
                       *(["--op-bonus", "--adapt-edit", "0.1"] if method == "sh" else []),
                       *(["--batch-bonus", "--fluency-weight", "0.5", "--fluency-top", "8"] if method == "prior-sh"
                         else [])],
                      capsys)
    assert code == 0, out.err
    config = json.loads((out_dir / "plan.json").read_text())["config"]
    assert config["carry"] == 1 and config["hedge"] == (method in ("sh", "prior-sh"))  # on by default if ranked
    assert config["compose"] == (0 if method == "gradient-sh" else 2)
    assert config["hedge_window"] == (1 if method in ("sh", "prior-sh") else 0)
    assert config["hedge_on"] == ("reached" if method in ("sh", "prior-sh") else "first-rung")
    assert config["lazy_initial"] == (method in ("sh", "prior-sh"))  # on by default
    assert config["op_bonus"] == (method in ("sh", "prior-sh"))  # on by default for prior-sh, asked for sh
    assert config["batch_bonus"] == ("batch-bonus" in out.out) == (method == "prior-sh")
    assert (config["fluency_weight"] == 0.5) == ("readability weighed in" in out.out) == (method == "prior-sh")
    assert config["fluency_top"] == (8 if method == "prior-sh" else 0)
    assert (config["adapt_edit"] == 0.1) == ("per measured edit (adapt-edit 0.1)" in out.out) == (method == "sh")
    costs = json.loads((out_dir / "plan.json").read_text())["costs"]
    assert (costs["fluency"]["requests"] > 0) == (method == "prior-sh")  # scored apart from the budget
    assert config["compose_hedge"] == ("compose_hedge" in config["rounds"][0]) == (method in ("sh", "prior-sh"))
    assert all(("composed" in r) for r in config["rounds"]) and (method == "gradient-sh") == all(
        r["composed"] == 0 for r in config["rounds"])
    assert ("ranker hedged" in out.out) == config["hedge"]
    assert "== verified chains" in out.out and "held-out test accuracy" in out.out
    assert ("predicted" in out.out) == (method != "random-sh")
    summary = json.loads(out.out.strip().splitlines()[-1])
    assert summary["example_evals"] <= 60 and set(summary["test"]) == {"initial", "final"}
    assert summary["method"] == {"sh": "tap-sh"}.get(method, method)
    assert "fluency" in out.out and set(summary["fluency"]) == {"initial", "final"}
    assert {p.name for p in out_dir.iterdir()} >= {"plan.json", "plan.md", "final_chain.json", "final_prompt.txt"}


def test_the_python_api_runs_the_successive_halving_search_by_default(task, tmp_path):
    """``Planner.optimize`` with the default config is TaP's search (``tap.planning.search``) ranked by the
    operation prior, exactly as built directly, with its test report, settings, the per-operation correction
    and no gradient refinement unless asked; ``sh`` is the same search ranked by the world model; ``random-sh``
    needs no model."""
    from tap.planning.search import SuccessiveHalvingSearch
    from tests.planning.test_search import _strip

    assert PlanConfig().method == "prior-sh" and PlanConfig().refine_for("prior-sh") == 0
    default = PlanConfig()
    assert default.hedge_for("prior-sh") and default.hedge_for("sh") and not default.hedge_for("random-sh")
    assert not PlanConfig(hedge=False).hedge_for("prior-sh") and not PlanConfig(enter=1).hedge_for("prior-sh")
    assert PlanConfig().refine_for("sh") == 0 and PlanConfig().refine_for("gradient")
    wm = tiny_world_model()
    config = PlanConfig(eval_examples=8, test_examples=6, menu=24, enter=4)
    result = Planner(wm, config=config, llm=RuleLLM()).optimize(task, budget_calls=60, seed=1, progress=False,
                                                                out_dir=tmp_path / "run")
    assert result.method == "prior-sh" and result.costs["search"]["example_evals"] <= 60
    assert set(result.test) == {"initial", "final"} and result.config["menu"] == 24
    assert result.config["method"] == "prior-sh" and result.config["refine_steps"] == 0 and result.config["hedge"]
    assert (result.config["compose"], result.config["compose_hedge"], result.config["early_accept"],
            result.config["adapt"]) == (4, True, 0.05, 0.1)
    assert any("adapt" in r for r in result.config["rounds"])  # the correction learnt from the first round on
    default_search = {"hedge": True, "compose": 4, "compose_hedge": True, "early_accept": 0.05, "adapt": 0.1,
                      "lazy_initial": True}
    direct = SuccessiveHalvingSearch(RuleLLM(), task, None, 1, budget_calls=60, eval_examples=8, progress=False,
                                     world_model=wm, menu=24, enter=4, scorer="prior", op_bonus=True,
                                     **default_search).run()
    assert [r.chain for r in result.records] == [r.chain for r in direct.records]
    assert _strip(result)["records"] == _strip(direct)["records"]
    model = Planner(wm, config=PlanConfig(method="sh", eval_examples=8, test_examples=0, menu=24, enter=4),
                    llm=RuleLLM()).optimize(task, budget_calls=60, seed=1, progress=False)
    ranked = SuccessiveHalvingSearch(RuleLLM(), task, None, 1, budget_calls=60, eval_examples=8, progress=False,
                                     world_model=wm, menu=24, enter=4, **default_search).run()
    assert model.method == "tap-sh" and _strip(model)["records"] == _strip(ranked)["records"]
    assert PlanResult.load(tmp_path / "run").final_chain == result.final_chain
    uniform = Planner(None, config=PlanConfig(method="random-sh", eval_examples=8, test_examples=0, menu=24, enter=4),
                      llm=RuleLLM()).optimize(task, budget_calls=40, seed=1, progress=False)
    assert uniform.method == "random-sh" and uniform.costs["search"]["example_evals"] <= 40
    assert uniform.config["hedge"] is False  # no ranker to weigh
    carried = Planner(None, config=PlanConfig(method="random-sh", eval_examples=8, test_examples=0, menu=24, enter=4,
                                              carry=1), llm=RuleLLM()).optimize(task, budget_calls=150, seed=1,
                                                                                progress=False)
    direct = SuccessiveHalvingSearch(RuleLLM(), task, None, 1, budget_calls=150, eval_examples=8, progress=False,
                                     menu=24, enter=4, scorer="random", carry=1, early_accept=0.05,
                                     lazy_initial=True).run()
    assert carried.config["carry"] == 1 and _strip(carried)["records"] == _strip(direct)["records"]
    eager = Planner(None, config=PlanConfig(method="random-sh", eval_examples=8, test_examples=0, menu=24, enter=4,
                                            lazy_initial=False), llm=RuleLLM()).optimize(task, budget_calls=60, seed=1,
                                                                                         progress=False)
    direct = SuccessiveHalvingSearch(RuleLLM(), task, None, 1, budget_calls=60, eval_examples=8, progress=False,
                                     menu=24, enter=4, scorer="random", early_accept=0.05).run()
    assert not eager.config["lazy_initial"] and eager.records[0].examples == 8  # the initial chain on all examples
    assert uniform.records[0].examples == 4  # by default: on the first rung
    assert _strip(eager)["records"] == _strip(direct)["records"]
    fixed = Planner(wm, config=PlanConfig(eval_examples=8, test_examples=0, menu=24, enter=4, hedge=False, compose=0,
                                          early_accept=0.0, adapt=0.0, lazy_initial=False),  # the benchmark's prior-sh
                    llm=RuleLLM()).optimize(task, budget_calls=150, seed=1, progress=False)
    direct = SuccessiveHalvingSearch(RuleLLM(), task, None, 1, budget_calls=150, eval_examples=8, progress=False,
                                     world_model=wm, menu=24, enter=4, scorer="prior").run()
    assert fixed.config["hedge"] is False and _strip(fixed)["records"] == _strip(direct)["records"]
    assert "hedge" not in fixed.config["rounds"][-1]  # --no-hedge: a fixed share, as the benchmark's prior-sh
    with pytest.raises(TapError, match="needs a world model"):
        Planner(None, llm=RuleLLM())
    with pytest.raises(TapError, match="needs a world model"):
        Planner(None, config=PlanConfig(method="random-sh"), llm=RuleLLM()).optimize(task, budget=3, method="sh")
