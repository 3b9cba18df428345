"""Head-to-head: TaP against the chain optimisers people use, at equal budgets of real chain evaluations.

Every method searches the same task, from the same initial chain (the task's own instruction), on the
same frozen LLM, the same split (split seed 0 for every run: the split the world model's data was
collected on, so no world-model training example is ever a test example), the same ``eval_examples``
val examples, and is charged the same way: one chain evaluation per chain scored on those examples
(``tap.env`` / ``tap.baselines.base``). Methods:

- ``tap``, ``tap-model``, ``random-sh``, ``tap-readable``: TaP's search with its presets ``default``, ``model``,
  ``random`` (the same search with a uniform choice: the ablation that isolates the ranker) and ``readable``
  (``tap.planning.presets``);
- ``random``, ``grips``, ``ape``, ``opro``, ``evoprompt``, ``demos``: ``tap.baselines``;
- ``promptolution-evoprompt`` (not in the default list): the maintained ``promptolution`` library's EvoPrompt-GA
  on the same environment and accounting, a reference row beside ``evoprompt`` (``promptolution_ref.py``).

Each (task, method, seed) runs once with the largest budget. Every method reads its budget only to stop,
so the chain it held after B evaluations is exactly what a run with budget B returns; that chain is
scored on the task's test split (never seen by any search) at every point of a budget grid. TaP's costs
are counted in two settings: ``per-task`` adds the chain evaluations spent collecting the world model's
data on this task (read from its checkpoint); ``transfer`` is a task the world model never saw (collection
cost 0 on it).

    python benchmarks/compare.py --quick          # ii:sentiment, one seed, TaP's default and random-sh at 64, 128 calls
    python benchmarks/compare.py                  # dev suite + held-out task, seeds 0-2, budgets 25-200
    python benchmarks/compare.py --tasks bigbench:arithmetic/1_digit_addition bigbench:object_counting
    python benchmarks/compare.py --report-only    # table and plot from the saved runs
    python benchmarks/compare.py --unit calls --tasks ii:rhymes --methods tap random-sh \
        --world-model checkpoints/quickstart/world_model --seeds 0 1 2 3 4   # budgets in LLM calls

``--unit calls`` gives every budget in LLM calls (example evaluations; default grid 128-2048) instead of
chain evaluations, and writes under ``compare-calls/``.

Writes one JSON per run under ``benchmarks/results/compare/<task>/`` (``compare-quick`` with --quick), then
``compare.md`` (mean and 95 % Student-t interval of test accuracy per method, task and budget; chain
evaluations to reach the best baseline's final accuracy) and ``compare.png`` (test accuracy against real
chain evaluations) next to them. A rerun skips finished runs and pays no LLM call twice (the call cache).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from stats import fmt, mean_ci  # noqa: E402 - benchmarks/ is on the path from here on

from tap.machine import machine_info  # noqa: E402
from tap.planning.presets import METHOD_NAMES  # noqa: E402
from tap.tasks import task_slug  # noqa: E402

DEV = ["bigbench:arithmetic/1_digit_addition", "bigbench:arithmetic/1_digit_multiplication",
       "bigbench:arithmetic/2_digit_addition", "bigbench:arithmetic/1_digit_subtraction"]
HELD_OUT = ["bigbench:object_counting"]
QUICK = "ii:sentiment"  # --quick's task: shipped (BIG-bench's source is not always available), and the first task
                        # of configs/world_model.yaml's default data, so the per-task setting as on the dev suite
#: TaP's search under each preset (tap.planning.presets): method name -> preset
TAP = {name: preset for preset, name in METHOD_NAMES.items()}
MODEL_FREE = ("random-sh",)  # needs no world model
REFERENCE = ("promptolution-evoprompt",)  # a maintained library's implementation (optional dependency)
BASELINES = ("random", "grips", "ape", "opro", "evoprompt", "demos", *REFERENCE)
METHODS = (*TAP, *BASELINES)
DEFAULT_METHODS = ("tap", "random-sh", *BASELINES[: -len(REFERENCE)])
#: where ``train.py fit --config configs/world_model.yaml`` writes its checkpoint (pass it as --world-model)
WORLD_MODEL = ROOT / "checkpoints" / "world_model"
GRID = (1, 5, 10, 15, 25, 35, 50, 75, 100, 150, 200, 300, 400)
CALL_GRID = (16, 32, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)
UNIT_WORDS = {"evals": "real chain evaluations", "calls": "LLM calls (example evaluations)"}
SPLIT_SEED = 0


def run_path(out: Path, task: str, method: str, seed: int) -> Path:
    return out / task_slug(task) / f"{method}-s{seed}.json"


def grid(budgets: list[int], unit: str = "evals") -> list[int]:
    """The budgets at which the held chain is scored on test: the requested ones plus a grid below them."""
    top = max(budgets)
    return sorted({*budgets, *(g for g in (CALL_GRID if unit == "calls" else GRID) if g <= top)})


# ---- running --------------------------------------------------------------------------------------
def _collection(result, unit: str) -> tuple[str, int]:
    """TaP's setting on this task and what collecting its world model's data here cost, in ``unit``."""
    c = result.costs["collection"]
    setting = "per-task" if c["task_in_training_data"] else "transfer"
    paid = c["chain_evals_this_task"] * (c["examples_per_eval"] if unit == "calls" else 1)
    return setting, paid


def search(method: str, task, budget: int, seed: int, args, llm, planner, proposer):
    """One search with ``budget`` (in ``args.unit``); returns (result, setting, collection cost on this task)."""
    unit = getattr(args, "unit", "evals")
    evals, calls = (None, budget) if unit == "calls" else (budget, None)
    if method in TAP:
        result = planner.optimize(task, budget=evals, budget_calls=calls, seed=seed, preset=TAP[method], progress=True)
        return (result, *_collection(result, unit)) if method not in MODEL_FREE else (result, "baseline", 0)
    from tap.baselines import USES_PROPOSER, run_baseline

    settings = {"eval_examples": args.eval_examples, "progress": True, "budget_calls": calls}
    if method in USES_PROPOSER or method in REFERENCE:
        settings["proposer"] = proposer
    if method in REFERENCE:
        from promptolution_ref import PromptolutionEvoPrompt

        return PromptolutionEvoPrompt(llm, task, evals, seed, **settings).run(), "reference", 0
    return run_baseline(method, llm, task, evals, seed, **settings), "baseline", 0


def run_one(method: str, task_spec: str, seed: int, args, llm, planner, proposer, task=None) -> dict:
    """One search run and its held-out test scores; ``task``: ``task_spec`` already loaded (with ``SPLIT_SEED``)."""
    from tap.env import Environment
    from tap.tasks import load_task

    task = task or load_task(task_spec, seed=SPLIT_SEED)
    t0 = time.time()
    result, setting, collection = search(method, task, max(args.budgets), seed, args, llm, planner, proposer)
    search_seconds = time.time() - t0
    test_env = Environment(llm, task, dense_reward=False)
    held_out = task.test[: args.test_examples]
    scored: dict[str, float] = {}

    def test(chain) -> float:
        key = chain.to_json()
        if key not in scored:
            scored[key] = test_env.evaluate(chain, held_out).accuracy
        return scored[key]

    unit = getattr(args, "unit", "evals")
    accepted = []  # every chain the run held, from the LLM call that made it the incumbent (calls budgets)
    if unit == "calls":
        for r in result.records:
            if r.accepted and r.calls <= max(args.budgets):
                accepted.append({"calls": r.calls, "examples": r.examples,
                                 "test": test(result.best_at(calls=r.calls)[0])})
    curve = []
    for b in grid(args.budgets, unit):
        chain, edits, search_acc = result.best_at(calls=b) if unit == "calls" else result.best_at(b)
        curve.append({"budget": b, "test": test(chain), "search": search_acc, "edits": len(edits),
                      "llm_calls_spent": b if unit == "calls" else result.calls_at(b)})
    costs = result.costs
    from tap.chains.fluency import fluency

    readable = fluency(llm, [result.initial_chain, result.final_chain])  # scoring calls, apart from the budget
    run = {"task": task_spec, "method": method, "seed": seed, "split_seed": SPLIT_SEED, "setting": setting,
            "budget": max(args.budgets), "budgets": sorted(args.budgets), "eval_examples": args.eval_examples,
            "test_examples": len(held_out),
            "collection_chain_evals": collection, "initial_test": test(result.initial_chain),
            "initial_search": result.initial_search["accuracy"], "curve": curve,
            "final_chain": result.final_chain.to_dict(), "final_edits": result.edits,
            "chain_evals": costs["search"]["chain_evals"], "example_evals": costs["search"].get("example_evals"),
            "llm_requests": costs["search"]["llm_requests"],
            "llm_calls": costs["search"]["llm_calls"], "proposer": costs.get("proposer", {"requests": 0}),
            "fluency_scoring": costs.get("fluency", {"requests": 0}),  # readability scored in the acquisition
            "seconds": round(search_seconds, 1), "test_seconds": round(time.time() - t0 - search_seconds, 1),
            "config": result.config, "model": getattr(llm, "name", ""), "machine": machine_info(),
            "fluency": {"initial": readable[0], "final": readable[1]}, "planning": costs.get("planning", {}),
            **({"accepted": accepted} if accepted else {})}
    return {**run, "unit": unit} if unit != "evals" else run  # runs without "unit" are in chain evaluations


def load_runs(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*/*.json"))]


# ---- reporting ------------------------------------------------------------------------------------


def at(run: dict, budget: int) -> float:
    """Test accuracy of the chain the run held after ``budget`` chain evaluations."""
    return max((p for p in run["curve"] if p["budget"] <= budget), key=lambda p: p["budget"])["test"]


def calls_to(run: dict, target: float) -> int | None:
    """Fewest LLM calls after which the held chain's test accuracy reaches ``target``: exact (the call that made
    it the incumbent) where the run recorded its acceptances, else the first grid budget (chain evaluations for
    runs in that unit, and runs written before acceptances were recorded).
    """
    if "accepted" in run:
        return next((a["calls"] for a in run["accepted"] if a["test"] >= target - 1e-9), None)
    return next((p["budget"] for p in run["curve"] if p["test"] >= target - 1e-9), None)


def _cell(values: list[float], seeds: int) -> str:
    """A report cell over the runs that reached its budget; ``(n=k)`` when fewer than the row's ``seeds`` did
    (runs of one method may stop at different budgets, e.g. extra seeds run only to the small budgets).
    """
    if not values:
        return "-"
    return fmt(values) + (f" (n={len(values)})" if len(values) < seeds else "")


def unit_of(runs: list[dict]) -> str:
    """The budget unit of the runs (``evals`` for runs written before calls budgets existed)."""
    units = {r.get("unit", "evals") for r in runs}
    if len(units) > 1:
        raise ValueError(f"runs in different budget units {sorted(units)} cannot share a table; "
                         "use one --out per unit.")
    return units.pop() if units else "evals"


def report(runs: list[dict]) -> str:
    if not runs:
        return "no runs yet"
    unit = unit_of(runs)
    budgets = sorted({b for r in runs for b in r["budgets"]})
    fluent = any("fluency" in r for r in runs)  # runs written before readability was measured have none
    lines = ["| task | method | setting | seeds | initial | " + " | ".join(f"@{b}" for b in budgets) +
             f" | {unit} to target (search + collection) | proposer requests | minutes |"
             + (" fluency: initial -> final |" if fluent else ""),
             "|---|---|---|---|---|" + "---|" * len(budgets) + "---|---|---|" + ("---|" if fluent else "")]
    notes = []
    for task in dict.fromkeys(r["task"] for r in runs):
        rs_task = [r for r in runs if r["task"] == task]
        top = max(r["budget"] for r in rs_task)
        base_means = {m: statistics.mean(at(r, top) for r in rs_task if r["method"] == m and r["budget"] >= top)
                      for m in BASELINES if any(r["method"] == m and r["budget"] >= top for r in rs_task)}
        target = max(base_means.values()) if base_means else None
        if target is not None:
            best_base = max(base_means, key=base_means.__getitem__)
            notes.append(f"- {task_slug(task)}: target {target:.3f} = {best_base}'s mean test accuracy at {top}.")
        for method in METHODS:
            rs = [r for r in rs_task if r["method"] == method]
            if not rs:
                continue
            cells = [_cell([at(r, b) for r in rs if r["budget"] >= b], len(rs)) for b in budgets]
            reach = ""
            if target is not None:
                hit = [calls_to(r, target) for r in rs]
                got = [h for h in hit if h is not None]
                extra = rs[0]["collection_chain_evals"]
                reach = f"{len(got)}/{len(rs)} runs" + (f"; median {statistics.median(got):g}" if got else "")
                reach += f" (+{extra})" if extra else ""
            prop = statistics.mean(r["proposer"].get("requests", 0) for r in rs)
            paid = [r["seconds"] for r in rs if timed(r)]
            minutes = f"{statistics.mean(paid) / 60:.1f}" if paid else "replayed"
            row = (f"| {task_slug(task)} | {method} | {rs[0]['setting']} | {len(rs)} | "
                   f"{fmt([r['initial_test'] for r in rs])} | " + " | ".join(cells)
                   + f" | {reach} | {prop:.0f} | {minutes} |")
            if fluent:
                has = [r["fluency"] for r in rs if "fluency" in r]
                row += (f" {fmt([f['initial'] for f in has], 2)} -> {fmt([f['final'] for f in has], 2)} |" if has
                        else " - |")
            lines.append(row)
    text = "\n".join(lines) + "\n\n" + "\n".join(notes)
    for extra in (paired_report(runs, budgets), planning_report(runs)):
        if extra:
            text += ("" if text.endswith("\n\n") else "\n\n") + extra.lstrip("\n")
    return text


def paired_report(runs: list[dict], budgets: list[int], base: str = "random-sh") -> str:
    """Per task and method: the per-seed difference to ``base`` (same task, same seed) at every budget, mean
    ± 95 % interval over the seeds both ran; and the budget each run needed to reach ``base``'s mean final
    test accuracy (the search with the model replaced by a uniform choice).
    """
    if not any(r["method"] == base for r in runs):
        return ""
    unit = unit_of(runs)
    lines = ["", "", f"Paired against {base} (same task and seed; mean ± 95 % Student-t half-width of the per-seed "
             f"difference in test accuracy), and the {unit} each run needed to reach {base}'s mean final test "
             "accuracy:", "",
             "| task | method | seeds | " + " | ".join(f"Δ@{b}" for b in budgets) + f" | {unit} to {base}'s final |",
             "|---|---|---|" + "---|" * len(budgets) + "---|"]
    for task in dict.fromkeys(r["task"] for r in runs):
        ref = {r["seed"]: r for r in runs if r["task"] == task and r["method"] == base}
        if not ref:
            continue
        top = max(r["budget"] for r in ref.values())
        target = statistics.mean(at(r, top) for r in ref.values() if r["budget"] >= top)
        for method in METHODS:
            rs = [r for r in runs if r["task"] == task and r["method"] == method and r["seed"] in ref]
            if not rs:
                continue
            cells = [_cell([at(r, b) - at(ref[r["seed"]], b) for r in rs
                            if min(r["budget"], ref[r["seed"]]["budget"]) >= b], len(rs)) for b in budgets]
            hit = [h for h in (calls_to(r, target) for r in rs) if h is not None]
            reach = f"{len(hit)}/{len(rs)} runs" + (f"; median {statistics.median(hit):g}" if hit else "")
            reach += f"; {sum(h <= top / 3 for h in hit)}/{len(rs)} within {top / 3:.0f}"  # the 1/3 target
            lines.append(f"| {task_slug(task)} | {method} | {len(rs)} | " + " | ".join(cells) + f" | {reach} |")
    return "\n".join(lines)


def timed(run: dict) -> bool:
    """Whether a run's seconds measure what it cost: not a replay whose every LLM call came from the cache
    (e.g. a run repeated after another process had paid for it).
    """
    return not (run.get("llm_requests", 0) > 0 and run.get("llm_calls", 1) == 0)


def planning_report(runs: list[dict]) -> str:
    """What TaP's searches spent planning (menu, imagination, acquisition) per round, against one real
    evaluation at full fidelity (runs that recorded it).
    """
    rows = []
    for method in METHODS:
        rs = [r["planning"] for r in runs if r["method"] == method and r.get("planning", {}).get("rounds")
              and timed(r)]
        ratios = [p["ratio"] for p in rs if p.get("ratio") is not None]
        if rs and method not in MODEL_FREE:
            rows.append(f"| {method} | {len(rs)} | {statistics.mean(p['per_round'] for p in rs):.3f} | "
                        f"{statistics.mean(p['full_evaluation_seconds'] for p in rs):.2f} | "
                        f"{statistics.mean(ratios):.3f} | {_score_spread_rho(runs, method)} |")
    if not rows:
        return ""
    return "\n".join(["", "", "Planning cost per round (CPU seconds) against one real evaluation at full fidelity, "
                      "and how the acquisition's uncertainty relates to its predicted score (Spearman over every "
                      "entrant of every run of the method; - where it predicts no uncertainty):", "",
                      "| method | runs | planning s / round | s / full evaluation | ratio | ρ(score, σ) (entrants) |",
                      "|---|---|---|---|---|---|", *rows])


def _score_spread_rho(runs: list[dict], method: str) -> str:
    """Spearman of predicted score and uncertainty over the entrants of ``method``'s runs: near 1, an upper
    confidence bound mostly repeats the order of the mean.
    """
    import torch
    from torchmetrics.functional import spearman_corrcoef

    pairs = [(v["predicted"], v["uncertainty"]) for r in runs if r["method"] == method
             for rnd in r.get("config", {}).get("rounds", []) for v in rnd.get("verified", []) if "uncertainty" in v]
    if len(pairs) < 3 or len({u for _, u in pairs}) < 2:
        return "-"
    p, u = torch.tensor(pairs, dtype=torch.float64).T
    return f"{float(spearman_corrcoef(p, u)):.2f} ({len(pairs)})"


def plot(runs: list[dict], path: Path) -> Path | None:
    """Mean test accuracy (95 % band over seeds) against real chain evaluations, one panel per task. TaP
    per-task runs are drawn twice: search only, and shifted right by their data collection on the task.
    """
    if not runs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in runs))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.2), squeeze=False)
    colors = dict(zip(METHODS, plt.get_cmap("tab10").colors))
    colors.update({"tap": "black", "random-sh": "darkgoldenrod"})
    for ax, task in zip(axes[0], tasks):
        title = task_slug(task)
        for method in METHODS:
            rs = [r for r in runs if r["task"] == task and r["method"] == method]
            if not rs:
                continue
            xs = [p["budget"] for p in max(rs, key=lambda r: r["budget"])["curve"]]
            stats = [mean_ci([at(r, x) for r in rs if r["budget"] >= x]) for x in xs]  # the runs that got there
            m = [s[0] for s in stats]
            lo, hi = [max(0.0, s[0] - s[1]) for s in stats], [min(1.0, s[0] + s[1]) for s in stats]
            ax.plot(xs, m, label=method, color=colors[method], lw=2.2 if method == "tap" else 1.2)
            ax.fill_between(xs, lo, hi, color=colors[method], alpha=0.08)
            extra = rs[0]["collection_chain_evals"]
            if extra:
                ax.plot([x + extra for x in xs], m, ls="--", color=colors[method], lw=1.2,
                        label=f"{method} + collection")
            if method == "tap":
                title = f"{task_slug(task)} (TaP: {rs[0]['setting']}" + (f", collection {extra})" if extra else ")")
        ax.set_xscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(f"{UNIT_WORDS[unit_of(runs)]} (log)")
        ax.set_ylabel(f"test accuracy (mean of {len({r['seed'] for r in runs if r['task'] == task})} seeds, 95 % band)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(runs: list[dict], out: Path, command: str) -> None:
    from tap.paths import write_atomic

    table = report(runs)
    seconds = sum(r["seconds"] + r.get("test_seconds", 0) for r in runs if timed(r))
    replayed = sum(not timed(r) for r in runs)
    words = UNIT_WORDS[unit_of(runs)] if runs else UNIT_WORDS["evals"]
    header = (f"# Head-to-head at equal budgets\n\nCommand: `{command}`\n\n{len(runs)} runs; search and test "
              f"time {seconds / 60:.1f} minutes in all"
              + (f" ({replayed} runs replayed their calls from the cache, so their seconds are not a cost and "
                 "are left out of every time)" if replayed else "")
              + ". Cells: test accuracy (mean ± 95 % Student-t half-width "
              f"over seeds) of the chain each method held after that many {words}. "
              f"`(+N)`: {words.removeprefix('real ')} TaP spent collecting its world model's data on this task.\n\n")
    write_atomic(out.parent / f"{out.name}.md", header + table + "\n")
    plot(runs, out.parent / f"{out.name}.png")
    print(table)


def default_tasks(tasks: list[str] | None, quick: bool) -> list[str]:
    """The tasks a run covers: those given (only the first with ``--quick``), else the BIG-bench dev suite and its
    held-out task, or ``QUICK`` (shipped, so ``--quick`` runs on a machine without BIG-bench's source).
    """
    if quick:
        return (tasks or [QUICK])[:1]
    return list(tasks or DEV + HELD_OUT)


def main(argv: list[str] | None = None) -> int:
    from tap.quiet import quiet

    quiet()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tasks", nargs="+", help="task specs (default: the BIG-bench dev suite and its held-out task; "
                   f"{QUICK} with --quick)")
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=METHODS,
                   help="promptolution-evoprompt needs the optional package: pip install -e .[reference]")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--budgets", nargs="+", type=int, default=None,
                   help="in --unit (default: 25 50 100 200 chain evaluations; 128 256 512 1024 2048 calls)")
    p.add_argument("--unit", choices=["evals", "calls"], default="evals",
                   help="budgets in chain evaluations or in LLM calls (example evaluations)")
    p.add_argument("--world-model", default=None,
                   help="world-model checkpoint of TaP's ranked presets (default: the one that ships for --model; "
                        f"one you trained: {WORLD_MODEL.relative_to(ROOT)})")
    p.add_argument("--model", default="smollm2", help="the frozen LLM every method runs on")
    p.add_argument("--proposer", help="LLM for APE/OPRO/EvoPrompt proposals (default: the frozen LLM itself)")
    p.add_argument("--eval-examples", type=int, default=16, help="val examples per chain evaluation")
    p.add_argument("--test-examples", type=int, default=100, help="test examples the held chains are scored on")
    p.add_argument("--cache", default="default", help="LLM call cache file (default: $TAP_CACHE/calls.sqlite)")
    p.add_argument("--out", help="folder of per-run JSON (default benchmarks/results/compare[-quick])")
    p.add_argument("--quick", action="store_true", help="one task, one seed, TaP's default and random-sh at 64 and "
                   "128 LLM calls")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--mixed-models", action="store_true",
                   help="report runs made with different frozen LLMs (model or dtype) together")
    args = p.parse_args(argv)
    args.budgets = args.budgets or ([128, 256, 512, 1024, 2048] if args.unit == "calls" else [25, 50, 100, 200])
    args.tasks = default_tasks(args.tasks, args.quick)
    if args.quick:
        args.seeds, args.budgets, args.unit = [0], [64, 128], "calls"
        if "--methods" not in (argv if argv is not None else sys.argv[1:]):
            args.methods = ["tap", "random-sh"]
    default_out = "compare" + ("-calls" if args.unit == "calls" else "") + ("-quick" if args.quick else "")
    out = Path(args.out or ROOT / "benchmarks" / "results" / default_out)
    command = "python benchmarks/compare.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if not args.report_only:
        from tap.errors import TapError
        from tap.llm import load_llm
        from tap.planning import PlanConfig, Planner
        from tap.tasks import load_tasks

        try:
            tasks = load_tasks(args.tasks, seed=SPLIT_SEED)  # every task loads before any call is paid, once
        except TapError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        llm = load_llm(args.model, cache=args.cache)
        proposer = load_llm(args.proposer, cache=args.cache) if args.proposer else llm
        planner = None
        cfg = PlanConfig(eval_examples=args.eval_examples, test_examples=0)
        try:
            if set(TAP) - set(MODEL_FREE) & set(args.methods):
                planner = Planner.from_checkpoint(args.world_model, llm=llm, config=cfg, model=args.model)
            elif set(TAP) & set(args.methods):
                planner = Planner(None, llm=llm, config=PlanConfig(preset="random", eval_examples=args.eval_examples,
                                                                   test_examples=0))
        except TapError as err:
            print(f"error: {err}\nTaP's ranked presets need a world model trained against --model: the shipped one "
                  "(SmolLM2), or one you train (`python train.py fit --config configs/world_model.yaml`, then "
                  "--world-model checkpoints/world_model); or leave them out of --methods.", file=sys.stderr)
            return 2
        todo = [(t, m, s) for t in args.tasks for s in args.seeds for m in args.methods  # a task's seeds first
                if not run_path(out, t, m, s).exists()]
        print(f"{len(todo)} runs to do ({len(args.seeds) * len(args.tasks) * len(args.methods) - len(todo)} done)")
        from tap.paths import write_atomic

        for i, (task, method, seed) in enumerate(todo):
            path = run_path(out, task, method, seed)
            if path.exists():  # another process finished it meanwhile: a rerun would replay it from the cache
                print(f"[{i + 1}/{len(todo)}] {task_slug(task)} {method} seed {seed}: done by another run", flush=True)
                continue
            print(f"[{i + 1}/{len(todo)}] {task_slug(task)} {method} seed {seed}", flush=True)
            run = run_one(method, task, seed, args, llm, planner, proposer, tasks[task])
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps(run, indent=1, ensure_ascii=False))
    runs = [r for r in load_runs(out) if r["task"] in args.tasks and r["method"] in args.methods
            and r["seed"] in args.seeds]
    models = sorted({r.get("model", "") for r in runs})
    if len(models) > 1 and not args.mixed_models:
        print(f"error: the runs in {out} were made with different frozen LLMs ({', '.join(models)}); a model under "
              "another dtype is another frozen model, so their numbers are not comparable. Use another --out per "
              "model, or pass --mixed-models to report them together anyway.", file=sys.stderr)
        return 2
    write_report(runs, out, command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
