"""``plan.py``: optimise a task's chain under a budget of real LLM calls.

Runs TaP's search (``tap.planning.halving``) with a preset (``--preset``, ``tap.planning.presets``; any setting
can be overridden with ``--set key=value``). Prints the initial and final chain, one line per verified chain
(predicted and measured effect, the examples it was measured on, calls spent), and both chains' accuracy on
the task's held-out test split; writes plan.json, plan.md, final_chain.json, final_prompt.txt and a
TensorBoard run to --out.
"""

from __future__ import annotations

import argparse
import json

from tap.errors import TapError, exit_code
from tap.tasks import task_slug


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from tap.planning import PRESETS, SEARCH_DEFAULTS, PlanConfig

    d = PlanConfig()
    p = argparse.ArgumentParser(prog="plan.py", description=__doc__.split("\n\n")[0].replace("``", ""),
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--task", required=True,
                   help="ii:NAME (python -m tap.tasks), bigbench:NAME, or your own .jsonl/.csv file")
    p.add_argument("--checkpoint", default=None,
                   help="a WorldModel or ImaginationPolicy checkpoint (.ckpt or run folder); default: the world model "
                        "that ships for the frozen LLM (SmolLM2); the 'random' preset needs none")
    p.add_argument("--preset", choices=list(PRESETS), default=d.preset,
                   help="default: ranked by the learnt operation prior, corrected online; model: ranked by the world "
                        "model; random: uniform (random-sh, no checkpoint needed); readable: default + fluency")
    p.add_argument("--set", dest="settings", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override search settings of the preset: " + ", ".join(sorted(SEARCH_DEFAULTS)))
    p.add_argument("--budget-calls", type=int, default=None,
                   help="real LLM calls (example evaluations) the search may spend (default 256 unless --budget)")
    p.add_argument("--budget", type=int, default=None,
                   help="real chain evaluations the search may spend; with --budget-calls, both are enforced")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--induce", type=int, default=None,
                   help="instructions to induce from train pairs for the edit space (default: 8 for a task "
                        "without a description, else 0); proposer requests, never charged to the budget")
    p.add_argument("--proposer", help="LLM that induces instructions (default: the frozen LLM)")
    p.add_argument("--initial", help="starting chain: a JSON file written by Chain.to_json / final_chain.json")
    p.add_argument("--out", help="output folder (default runs/plan/<task>-<preset>-s<seed>)")
    p.add_argument("--eval-examples", type=int, default=d.eval_examples, help="val examples at the top rung")
    p.add_argument("--test-examples", type=int, default=d.test_examples,
                   help="held-out test examples for the final report (0: skip)")
    p.add_argument("--model", help="frozen LLM (default: the one the world model was trained against; smollm2)")
    p.add_argument("--cache", default="default", help="LLM call cache file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from tap.quiet import quiet

    quiet()
    args = parse_args(argv)
    return exit_code(lambda: run(args))


def run(args: argparse.Namespace) -> int:
    from tap.chains import Chain
    from tap.paths import ensure_writable
    from tap.planning import PlanConfig, Planner
    from tap.planning.presets import parse_overrides, resolve
    from tap.tasks import load_task

    settings = resolve(args.preset, args.settings)  # bad settings are refused before anything is loaded
    initial = None
    if args.initial:
        try:
            with open(args.initial, encoding="utf-8") as f:
                initial = Chain.from_json(f.read())
        except (OSError, UnicodeDecodeError) as err:
            raise TapError(f"cannot read the initial chain {args.initial}: {err}") from err
    if args.budget is None and args.budget_calls is None:
        args.budget_calls = 256
    out = args.out or f"runs/plan/{task_slug(args.task)}-{args.preset}-s{args.seed}"
    ensure_writable(out, "--out")  # before any model is loaded or call paid
    task = load_task(args.task, seed=args.seed)  # before the LLM is loaded (on first use)
    config = PlanConfig(preset=args.preset, settings=args.settings, eval_examples=args.eval_examples,
                        test_examples=args.test_examples)
    if settings["ranker"] == "random":  # the uniform ranker needs no world model
        planner = Planner(None, config=config, model=args.model or "smollm2", cache=args.cache)
    else:
        planner = Planner.from_checkpoint(args.checkpoint, config=config, model=args.model, cache=args.cache)
    induction = _induction(args, task, planner.llm)
    changed = parse_overrides(args.settings)
    print(f"searching {args.task} (preset {args.preset}" + (f", set {changed}" if changed else "")
          + f", seed {args.seed}" + (f", world model {planner.checkpoint})" if planner.checkpoint else ")"))
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
    from tap.planning.report import log_to_tensorboard

    log_to_tensorboard(result, out)
    print(f"wrote {out}/plan.json, plan.md, final_chain.json, final_prompt.txt; "
          f"TensorBoard: tensorboard --logdir {out}")
    print(json.dumps({"task": result.task, "method": result.method, "preset": args.preset, "seed": result.seed,
                      "search": {"initial": s0["accuracy"], "final": s1["accuracy"]},
                      "test": {k: v["accuracy"] for k, v in test.items()}, "budget_calls": args.budget_calls,
                      "chain_evals": c["search"]["chain_evals"], "example_evals": c["search"]["example_evals"],
                      "fluency": readable, "out": out}))
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
