"""How much the planners improve a chain at a fixed budget of real chain evaluations.

For each task, seed and method (``gradient``: relaxed planning through the world model; ``policy``:
the imagination policy; ``random``: random candidate edits with the same verification), one search
with the largest budget from the task's own instruction. The search never looks at its budget except
to stop, so the chain it held after 25 or 50 evaluations is exactly what a run with that budget returns
(``PlanResult.best_at``; a test checks this). Each of those chains, and the initial one, is then scored
on the task's held-out test split, which the search never saw.

    python benchmarks/plan_report.py                    # needs checkpoints/world_model and checkpoints/policy
    python benchmarks/plan_report.py --tasks bigbench:object_counting --seeds 0 1 2
    python benchmarks/plan_report.py --report-only      # the table from results/plan.json

Runs are appended to ``benchmarks/results/plan.json`` as they finish; a rerun skips those already there
(and every LLM call is cached), so an interrupted report resumes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from compare import DEV, fmt  # the dev suite and the mean ± 95 % Student-t cell, shared with compare.py
from compare import HELD_OUT as TRANSFER

from tap.machine import machine_info
from tap.tasks import task_slug

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "plan.json"


def _load() -> dict:
    return json.loads(OUT.read_text()) if OUT.exists() else {"runs": []}


def _save(data: dict) -> None:
    from tap.paths import write_atomic

    OUT.parent.mkdir(parents=True, exist_ok=True)
    runs = ",\n".join(json.dumps(r, separators=(",", ":")) for r in data["runs"])  # one run per line
    write_atomic(OUT, '{"runs": [\n' + runs + "\n]}\n")


def run_one(planners: dict, llm, task_spec: str, method: str, seed: int, budgets: list[int], eval_examples: int,
            test_examples: int) -> dict:
    from tap.env import Environment
    from tap.tasks import load_task

    task = load_task(task_spec, seed=seed)
    planner = planners["policy" if method == "policy" else "world_model"]
    start = time.time()
    slug = task_slug(task_spec)
    result = planner.optimize(task, budget=max(budgets), seed=seed, method=method, progress=True,
                              out_dir=ROOT / "runs" / "plan_report" / f"{slug}-{method}-s{seed}")
    search_seconds = time.time() - start
    test_env = Environment(llm, task, dense_reward=False)
    held_out = task.test[:test_examples]
    initial_test = test_env.evaluate(result.initial_chain, held_out).accuracy
    per_budget = {}
    for b in budgets:
        chain, edits, search_acc = result.best_at(b)
        per_budget[str(b)] = {"test": test_env.evaluate(chain, held_out).accuracy, "search": search_acc,
                              "edits": len(edits), "chain": chain.to_dict()}
    return {"task": task_spec, "method": method, "seed": seed, "eval_examples": eval_examples,
            "test_examples": len(held_out), "initial_test": initial_test,
            "initial_search": result.initial_search["accuracy"], "budgets": per_budget,
            "llm_requests": result.costs["search"]["llm_requests"], "llm_calls": result.costs["search"]["llm_calls"],
            "collection": result.costs["collection"], "seconds": round(search_seconds, 1),
            "machine": machine_info(),
            "records": [{"step": r.step, "edit": r.edit, "predicted": r.predicted, "uncertainty": r.uncertainty,
                         "measured": r.accuracy, "dense": r.dense, "chain_evals": r.evals, "llm_calls": r.requests,
                         "accepted": r.accepted, "example_evals": r.calls}
                        for r in result.records if r.predicted is not None]}  # the verifications, as stored before


def _search_at(run: dict, evals: int) -> float:
    """Search accuracy of the chain held after ``evals`` evaluations (from the verification records)."""
    held = [r["measured"] for r in run["records"] if r["accepted"] and r["chain_evals"] <= evals]
    return held[-1] if held else run["initial_search"]


def _spearman(x: list[float], y: list[float]) -> float:
    import torch
    from torchmetrics.functional import spearman_corrcoef

    return float(spearman_corrcoef(torch.tensor(x), torch.tensor(y))) if len(x) > 2 else float("nan")


def report(data: dict) -> str:
    runs = data["runs"]
    budgets = sorted({int(b) for r in runs for b in r["budgets"]})
    lines = ["| task | method | seeds | initial test | " + " | ".join(f"test @{b}" for b in budgets) +
             " | initial search | search @10 | search @" + str(budgets[-1]) + " | predicted vs measured: ρ, MAE |",
             "|---|---|---|---|" + "---|" * len(budgets) + "---|---|---|---|"]
    tasks = list(dict.fromkeys(r["task"] for r in runs))
    trained = {r["task"] for r in runs if r["collection"]["task_in_training_data"]}
    for task in sorted(tasks, key=lambda t: (t not in trained, tasks.index(t))):  # transfer tasks last
        for method in ("gradient", "policy", "random"):
            rs = [r for r in runs if r["task"] == task and r["method"] == method]
            if not rs:
                continue
            cells = [fmt([r["budgets"][str(b)]["test"] for r in rs if str(b) in r["budgets"]]) for b in budgets]
            mae = [abs(x["predicted"] - x["measured"]) for r in rs for x in r["records"]]
            rho = statistics.mean(_spearman([x["predicted"] for x in r["records"]],
                                            [x["measured"] for x in r["records"]]) for r in rs)
            transfer = "" if rs[0]["collection"]["task_in_training_data"] else " (never trained on)"
            lines.append(f"| {task.split(':')[-1]}{transfer} | {method} | {len(rs)} | "
                         f"{fmt([r['initial_test'] for r in rs])} | " + " | ".join(cells) +
                         f" | {fmt([r['initial_search'] for r in rs])} | "
                         f"{fmt([_search_at(r, 10) for r in rs])}"
                         f" | {fmt([r['budgets'][str(budgets[-1])]['search'] for r in rs])} | "
                         f"{rho:.2f}, {statistics.mean(mae):.3f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=DEV + TRANSFER)
    p.add_argument("--methods", nargs="+", default=["gradient", "policy", "random"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--budgets", nargs="+", type=int, default=[25, 50, 100])
    p.add_argument("--world-model", default=str(ROOT / "checkpoints" / "world_model"))
    p.add_argument("--policy", default=str(ROOT / "checkpoints" / "planner"))
    p.add_argument("--eval-examples", type=int, default=16)
    p.add_argument("--test-examples", type=int, default=50)
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args()
    data = _load()
    if not args.report_only:
        from tap.llm import load_llm
        from tap.planning import PlanConfig, Planner

        llm = load_llm("smollm2")
        cfg = {"eval_examples": args.eval_examples, "test_examples": 0}
        planners = {"world_model": Planner.from_checkpoint(args.world_model, llm=llm, config=PlanConfig(**cfg))}
        if "policy" in args.methods:
            planners["policy"] = Planner.from_checkpoint(args.policy, llm=llm, config=PlanConfig(**cfg))
        done = {(r["task"], r["method"], r["seed"]) for r in data["runs"]}
        for seed in args.seeds:
            for task in args.tasks:
                for method in args.methods:
                    if (task, method, seed) in done:
                        continue
                    data["runs"].append(run_one(planners, llm, task, method, seed, args.budgets, args.eval_examples,
                                                args.test_examples))
                    _save(data)
                    print(report(data), flush=True)
    print(report(data))


if __name__ == "__main__":
    main()
