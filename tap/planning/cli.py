"""``plan.py``: optimise a task's chain with a trained world model under a budget of real LLM evaluations.

It runs TaP's successive-halving search (``tap.planning.search``): each round a menu of ``--menu``
candidates is scored in imagination, ``--enter`` of them are picked by score + ``--beta`` x uncertainty
and verified by successive halving on paired examples, and a candidate replaces the incumbent only if it
beats it on the same examples. By default (``--method prior-sh``) the score is the operation prior the
world model learnt on its training tasks (each edit operation's mean accuracy change there), which ranks
better on new tasks than the world model's own predictions so far (``benchmarks/README.md``); ``sh``
ranks by those predictions and their uncertainty, ``random-sh`` (no checkpoint needed) uniformly,
``gradient-sh`` and ``policy-sh`` by the gradient planner or an imagination policy (its checkpoint).

Prints the initial and final chain, one line per verified chain (predicted and measured effect, the
examples it was measured on, calls spent), and both chains' accuracy on the task's held-out test
split; writes plan.json, plan.md, final_chain.json and final_prompt.txt to --out. The older
verify-top-k planner (``--method gradient | policy | random``) also writes the verified transitions
and a TensorBoard run.
"""

from __future__ import annotations

import argparse
import json

from tap.errors import TapError, exit_code
from tap.tasks import task_slug


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from tap.planning import METHODS, GradientConfig, PlanConfig

    d, g = PlanConfig(), GradientConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip("`"),
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--task", required=True,
                   help="bigbench:NAME, bigbench:parent/subtask, ii:NAME (python -m tap.tasks), or a .jsonl/.csv file")
    p.add_argument("--checkpoint", default="checkpoints/world_model",
                   help="a WorldModel or ImaginationPolicy checkpoint (.ckpt or run folder)")
    p.add_argument("--budget", type=int, default=None,
                   help="real chain evaluations the search may spend (default 60 unless --budget-calls is given)")
    p.add_argument("--budget-calls", type=int, default=None,
                   help="real LLM calls (example evaluations) the search may spend; with --budget, both are enforced")
    p.add_argument("--induce", type=int, default=None,
                   help="instructions to induce from train pairs for the edit space (default: 8 for a task "
                        "without a description, else 0); proposer requests, never charged to the budget")
    p.add_argument("--proposer", help="LLM that induces instructions (default: the frozen LLM)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--method", choices=METHODS, default=d.method,
                   help="TaP's successive-halving search ranked by the operation prior the world model learnt "
                        "on its training tasks (prior-sh: ranks best on new tasks so far), by the world model's "
                        "predictions (sh), uniformly (random-sh: needs no checkpoint), by the gradient planner or a "
                        "policy; "
                        "or the verify-top-k planner: gradient, policy (policy checkpoint), random edits")
    p.add_argument("--menu", type=int, default=256, help="sh: candidates scored in imagination per round")
    p.add_argument("--enter", type=int, default=8, help="sh: candidates verified by successive halving per round")
    p.add_argument("--beta", type=float, default=1.0, help="sh: weight of the uncertainty in the acquisition")
    p.add_argument("--adapt", type=float, default=None,
                   help="sh, prior-sh: learn online how this task departs from the ranker per edit operation, "
                        "with this prior scale (accuracy change; 0: off). Default: 0.1 for prior-sh and sh")
    p.add_argument("--adapt-edit", type=float, default=0.0,
                   help="sh, prior-sh: also learn online each measured edit's own departure inside its operation "
                        "(the same instruction, step or demonstration from another chain), with this prior scale "
                        "(0: off, the default; needs --adapt > 0)")
    p.add_argument("--carry", type=int, default=0,
                   help="sh: carry up to this many entrants that beat the incumbent without being accepted into the "
                        "next round, ahead of the acquisition (0: off)")
    p.add_argument("--hedge", action=argparse.BooleanOptionalAction, default=None,
                   help="sh: set each round's share of uniformly drawn entrants from how the ranker's entrants fare "
                        "against them on this task, so a ranker that misleads hands its slots to random draws "
                        "(default: on for every ranked search, off for random-sh; --no-hedge: a fixed 1 in 8)")
    p.add_argument("--hedge-window", type=int, default=0,
                   help="sh: with the hedge on, weigh only the entrants of the last this many rounds (0: every round)")
    p.add_argument("--hedge-on", choices=["first-rung", "reached"], default="first-rung",
                   help="sh: what the hedges weigh each entrant by: its score on the first rung, or its accuracy "
                        "change at the highest rung of the halving it reached")
    p.add_argument("--compose", type=int, default=None,
                   help="sh, prior-sh, random-sh: also let the ranker compose plans of this many of its best-ranked "
                        "single edits, applied together, up to one per entrant a round (default: 4 for sh and "
                        "prior-sh, 0 for random-sh; 0: off)")
    p.add_argument("--compose-hedge", action=argparse.BooleanOptionalAction, default=None,
                   help="sh, prior-sh: measure the composed plans against the ranker's other picks and set their "
                        "share of its entrants from that, one to start with (needs --compose >= 2; default: on "
                        "wherever plans are composed)")
    p.add_argument("--early-accept", type=float, default=None,
                   help="sh, prior-sh, random-sh: accept an entrant below the top rung of the halving when it beats "
                        "the incumbent on the same examples by a paired sign test at this level, ending the round "
                        "(default 0.05; 0: off)")
    p.add_argument("--lazy-initial", action=argparse.BooleanOptionalAction, default=None,
                   help="sh, prior-sh, random-sh: evaluate the initial chain on the first rung's examples only and pay "
                        "the rest as the halving compares with it (default: on)")
    p.add_argument("--op-bonus", action=argparse.BooleanOptionalAction, default=None,
                   help="sh, prior-sh: add the online correction's per-operation uncertainty to every candidate's, so "
                        "the acquisition also explores operations this task has not measured (needs --adapt > 0; "
                        "default: on for prior-sh, off for sh)")
    p.add_argument("--batch-bonus", action=argparse.BooleanOptionalAction, default=None,
                   help="sh, prior-sh: pick a round's ranked entrants one at a time, each counted as measured before "
                        "the next, so the operation bonus spreads them over operations (needs the op-bonus; default: "
                        "off)")
    p.add_argument("--fluency-weight", type=float, default=0.0,
                   help="ranked sh searches: add this times the change in the frozen LLM's mean log-probability "
                        "per token of the instruction and steps to every candidate's score, so readable edits rank "
                        "first (0: off; e.g. 0.1: one nat per token weighs as much as 10 accuracy points)")
    p.add_argument("--fluency-top", type=int, default=0,
                   help="with --fluency-weight: score fluency only for this many candidates with the highest "
                        "acquisition value, the rest counted as the worst of them (0: every candidate)")
    p.add_argument("--initial", help="starting chain: a JSON file written by Chain.to_json / final_chain.json")
    p.add_argument("--out", help="output folder (default runs/plan/<task>-<method>-s<seed>)")
    p.add_argument("--candidates", type=int, default=d.candidates, help="candidate edits per step (K)")
    p.add_argument("--verify-top", type=int, default=d.verify_top, help="planned chains verified per step")
    p.add_argument("--plan-length", "--horizon", dest="plan_length", type=int, default=g.plan_length,
                   help="edits per imagined plan (H; --horizon is its old name)")
    p.add_argument("--grad-steps", type=int, default=g.steps, help="gradient steps per plan")
    p.add_argument("--lr", type=float, default=g.lr, help="learning rate on the plan's logits")
    p.add_argument("--temperature", type=float, default=g.temperature, help="softmax temperature of the relaxation")
    p.add_argument("--uncertainty-penalty", type=float, default=g.uncertainty_penalty)
    p.add_argument("--discount", type=float, default=g.discount)
    p.add_argument("--restarts", type=int, default=g.restarts, help="relaxed plans optimised in parallel")
    p.add_argument("--refine-steps", type=int, default=d.refine_steps,
                   help="refinement steps of the world model on verified transitions after each step (0: off; "
                        "default 0 for sh, 10 for the verify-top-k planner)")
    p.add_argument("--refine-lr", type=float, default=d.refine_lr)
    p.add_argument("--eval-examples", type=int, default=d.eval_examples, help="val examples per verification")
    p.add_argument("--test-examples", type=int, default=d.test_examples,
                   help="held-out test examples for the final report (0: skip)")
    p.add_argument("--model", help="frozen LLM (default: the one the world model was trained against)")
    p.add_argument("--cache", default="default", help="LLM call cache file")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-step lines")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return exit_code(lambda: run(args))


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from tap.chains import Chain
    from tap.paths import ensure_writable
    from tap.planning import GradientConfig, PlanConfig, Planner
    from tap.planning.planner import SH_METHODS
    from tap.tasks import load_task

    initial = None
    if args.initial:
        try:
            with open(args.initial, encoding="utf-8") as f:
                initial = Chain.from_json(f.read())
        except (OSError, UnicodeDecodeError) as err:
            raise TapError(f"cannot read the initial chain {args.initial}: {err}") from err
    if args.budget is None and args.budget_calls is None:
        args.budget = 60
    out = args.out or f"runs/plan/{task_slug(args.task)}-{args.method}-s{args.seed}"
    ensure_writable(out, "--out")  # before any model is loaded or call paid
    if args.method in SH_METHODS:
        return run_sh(args, initial, out)
    grad = GradientConfig(args.plan_length, args.grad_steps, args.lr, args.temperature, args.uncertainty_penalty,
                          args.discount, args.restarts)
    config = PlanConfig(method=args.method, candidates=args.candidates, verify_top=args.verify_top, gradient=grad,
                        refine_steps=args.refine_steps, refine_lr=args.refine_lr, eval_examples=args.eval_examples,
                        test_examples=args.test_examples)
    planner = Planner.from_checkpoint(args.checkpoint, config=config, model=args.model, cache=args.cache)
    task = load_task(args.task, seed=args.seed)
    induction = _induction(args, task, planner.llm)
    budget = " and ".join(([f"{args.budget} chain evaluations"] if args.budget else [])
                          + ([f"{args.budget_calls} LLM calls"] if args.budget_calls else []))
    print(f"planning {args.task} with {planner.checkpoint} ({args.method}, budget {budget}, seed {args.seed})")
    show = (lambda r: tqdm.write(r.line())) if not args.quiet else None
    result = planner.optimize(task, budget=args.budget, seed=args.seed, initial=initial, progress=not args.quiet,
                              out_dir=out, log_dir=out, on_record=show, budget_calls=args.budget_calls,
                              induction=induction)
    print("\n== initial chain ==")
    print(result.initial_chain.describe())
    print("\n== verified edits ==")
    for r in result.records:
        print(r.line())
    print("\n== final chain ==")
    print(result.final_chain.describe())
    print("\n== result ==")
    s0, s1 = result.initial_search, result.final_search
    print(f"search accuracy ({result.costs['search']['examples_per_eval']} val examples): "
          f"initial {s0['accuracy']:.3f} -> final {s1['accuracy']:.3f}")
    if result.test:
        t0, t1 = result.test["initial"], result.test["final"]
        print(f"held-out test accuracy ({t0['n']} test examples, never seen by the search): "
              f"initial {t0['accuracy']:.3f} -> final {t1['accuracy']:.3f}")
    readable = _fluency(planner.llm, result)
    c = result.costs
    print(f"cost: {c['search']['chain_evals']:g} chain evaluations and {c['search']['example_evals']} LLM calls "
          f"(budget: {budget}), "
          f"{c['search']['llm_requests']} LLM requests ({c['search']['llm_calls']} paid, "
          f"{c['search']['cache_hits']} from cache) in {c['search']['seconds']:.0f} s; test "
          f"{c['test']['chain_evals']} evaluations; world-model data on this task: "
          f"{c['collection']['chain_evals_this_task']} chain evaluations")
    print(f"wrote {out}/plan.json, plan.md, final_chain.json, final_prompt.txt; "
          f"TensorBoard: tensorboard --logdir {out}")
    print(json.dumps({"task": result.task, "method": result.method, "seed": result.seed, "budget": result.budget,
                      "search": {"initial": s0["accuracy"], "final": s1["accuracy"]},
                      "test": {k: v["accuracy"] for k, v in result.test.items()},
                      "budget_calls": args.budget_calls, "chain_evals": c["search"]["chain_evals"],
                      "example_evals": c["search"]["example_evals"], "fluency": readable, "out": out}))
    return 0


def _fluency(llm, result) -> dict[str, float]:
    """Print and return the initial and final chains' fluency (``tap.chains.fluency``)."""
    from tap.chains.fluency import fluency

    initial, final = fluency(llm, [result.initial_chain, result.final_chain])
    print(f"fluency (mean log-prob per token of instruction and steps, higher is more readable): "
          f"initial {initial:.2f} -> final {final:.2f}")
    return {"initial": initial, "final": final}


def _induction(args: argparse.Namespace, task, llm):
    from tap.chains.induce import default_count, induce_instructions
    from tap.llm import load_llm

    n_induce = default_count(task, args.induce)
    if not n_induce:
        return None
    proposer = load_llm(args.proposer, cache=args.cache) if args.proposer else llm
    induction = induce_instructions(proposer, task, n=n_induce, seed=args.seed)
    print(f"induced {len(induction.instructions)} instructions with {induction.model} "
          f"({induction.requests} proposer requests, {induction.llm_calls} paid)")
    return induction


def run_sh(args: argparse.Namespace, initial, out: str) -> int:
    """plan.py with the successive-halving search (``--method sh | prior-sh | random-sh | ...``)."""
    from tap.planning import PlanConfig, Planner
    from tap.tasks import load_task

    config = PlanConfig(method=args.method, menu=args.menu, enter=args.enter, beta=args.beta, adapt=args.adapt,
                        adapt_edit=args.adapt_edit, carry=args.carry, hedge=args.hedge,
                        hedge_window=args.hedge_window, hedge_on=args.hedge_on,
                        compose=args.compose, compose_hedge=args.compose_hedge, early_accept=args.early_accept,
                        lazy_initial=args.lazy_initial, op_bonus=args.op_bonus, batch_bonus=args.batch_bonus,
                        fluency_weight=args.fluency_weight, fluency_top=args.fluency_top,
                        refine_steps=args.refine_steps,
                        refine_lr=args.refine_lr, eval_examples=args.eval_examples, test_examples=args.test_examples)
    if args.method == "random-sh":  # the uniform ranker needs no world model
        planner = Planner(None, config=config, model=args.model or "smollm2", cache=args.cache)
    else:
        planner = Planner.from_checkpoint(args.checkpoint, config=config, model=args.model, cache=args.cache)
    task = load_task(args.task, seed=args.seed)  # before the LLM is loaded (on first use)
    induction = _induction(args, task, planner.llm)
    hedged = ", ranker hedged against random draws" if config.hedge_for(args.method) else ""
    if adapt := config.adapt_for(args.method):
        hedged += f", corrected online per operation (adapt {adapt:g})"
        if config.adapt_edit:
            hedged += f" and per measured edit (adapt-edit {config.adapt_edit:g})"
    if config.op_bonus_for(args.method):
        hedged += ", optimistic about operations not measured yet (op-bonus)"
    if config.batch_bonus_for(args.method):
        hedged += ", entrants picked one at a time (batch-bonus)"
    if config.fluency_weight:
        hedged += f", readability weighed in (fluency-weight {config.fluency_weight:g}" + (
            f", top {config.fluency_top})" if config.fluency_top else ")")
    print(f"searching {args.task} ({args.method}{hedged}, seed {args.seed}"
          + (f", world model {planner.checkpoint})" if planner.checkpoint else ")"))
    result = planner.optimize(task, budget=args.budget, budget_calls=args.budget_calls, seed=args.seed,
                              initial=initial, progress=not args.quiet, out_dir=out, induction=induction)
    test = result.test
    print("\n== initial chain ==")
    print(result.initial_chain.describe())
    print("\n== verified chains (rung = examples it was measured on) ==")
    for r in result.records:
        guess = f"predicted {r.predicted:+.3f} ± {r.uncertainty:.3f}  " if r.predicted is not None else ""
        print(f"{r.note[:70]:<70}  {guess}measured {r.accuracy:.3f} on {r.examples}  calls {r.calls}"
              + ("  accepted" if r.accepted else ""))
    print("\n== final chain ==")
    print(result.final_chain.describe())
    s0, s1, c = result.initial_search, result.final_search, result.costs
    full = c["search"]["examples_per_eval"]
    on, was = s1.get("examples", full), s0.get("examples", full)
    print(f"\nsearch accuracy ({full} val examples): {s0['accuracy']:.3f}"
          + (f" (on the first {was}: a lazy start, paid where compared)" if was < full else "")
          + f" -> {s1['accuracy']:.3f}" + (f" (on the first {on}: accepted early, below the top rung)"
                                          if on < full else ""))
    if test:
        print(f"held-out test accuracy ({test['initial']['n']} test examples, never seen by the search): "
              f"{test['initial']['accuracy']:.3f} -> {test['final']['accuracy']:.3f}")
    readable = _fluency(planner.llm, result)
    print(f"cost: {c['search']['example_evals']} LLM calls, {c['search']['chain_evals']:g} chain evaluations, "
          f"{len(result.config['rounds'])} rounds in {c['search']['seconds']:.0f} s; world-model data on this task: "
          f"{c['collection']['chain_evals_this_task']} chain evaluations")
    print(f"wrote {out}/plan.json, plan.md, final_chain.json, final_prompt.txt")
    print(json.dumps({"task": result.task, "method": result.method, "seed": result.seed,
                      "search": {"initial": s0["accuracy"], "final": s1["accuracy"]},
                      "test": {k: v["accuracy"] for k, v in test.items()}, "budget_calls": args.budget_calls,
                      "chain_evals": c["search"]["chain_evals"], "example_evals": c["search"]["example_evals"],
                      "fluency": readable, "out": out}))
    return 0
