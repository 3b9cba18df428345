"""What the long budgets of a ``compare.py`` grid add, read from its saved runs.

Per task and method: the mean and the best test accuracy over seeds at each budget (is a small budget already at
what the search reaches at all?), how many runs still moved their held chain's test accuracy after a given budget,
and, with ``--reference``, whether every run here holds the same chain accuracies at the budgets it shares with a
run of the same task, method and seed in another folder (a run with budget B is the first B calls of a longer
run). No LLM call; a second. ``benchmarks/results/grid/PLAN.md`` reports it beside its rules.

    python benchmarks/grid_check.py benchmarks/results/grid/transfer --after 256 \
        --reference benchmarks/results/batch/transfer
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

import compare  # benchmarks/ is on the path when this file runs
from compare import at as test_at

from tap.tasks import task_slug


def load_runs(folder: Path) -> dict[tuple[str, str, int], dict]:
    """``(task, method, seed) -> run`` for every run ``compare.py`` saved under ``folder``."""
    runs = {(r["task"], r["method"], r["seed"]): r for r in compare.load_runs(folder)}
    if not runs:
        raise SystemExit(f"no runs under {folder}: give a compare.py --out folder "
                         "(it holds <task>/<method>-s<seed>.json)")
    return runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path, help="a compare.py --out folder")
    p.add_argument("--after", type=int, default=256, help="count the runs whose test accuracy moved after this budget")
    p.add_argument("--reference", type=Path, help="another --out folder whose runs share budgets with these")
    args = p.parse_args(argv)
    runs = load_runs(args.folder)
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for (task, method, _), run in runs.items():
        groups[(task, method)].append(run)
    budgets = sorted({b for run in runs.values() for b in run["budgets"]})
    print("| task | method | seeds | " + " | ".join(f"mean / best @{b}" for b in budgets)
          + f" | runs moved after {args.after} | mean change after {args.after} |")
    print("|---|---|---|" + "---|" * len(budgets) + "---|---|")
    for (task, method), rs in sorted(groups.items()):
        cells = []
        for b in budgets:
            vals = [test_at(r, b) for r in rs if r["budget"] >= b]
            cells.append(f"{statistics.mean(vals):.3f} / {max(vals):.2f}" if vals else "-")
        done = [r for r in rs if r["budget"] > args.after]
        moved = sum(test_at(r, r["budget"]) != test_at(r, args.after) for r in done)
        change = statistics.mean(test_at(r, r["budget"]) - test_at(r, args.after) for r in done) if done else 0.0
        print(f"| {task_slug(task)} | {method} | {len(rs)} | " + " | ".join(cells)
              + f" | {moved}/{len(done)} | {change:+.3f} |")
    if args.reference:
        ref = load_runs(args.reference)
        same = differ = 0
        for key, run in runs.items():
            if key not in ref:
                continue
            shared = {p["budget"] for p in ref[key]["curve"]} & {p["budget"] for p in run["curve"]}
            for b in sorted(shared):
                if test_at(run, b) == test_at(ref[key], b):
                    same += 1
                else:
                    differ += 1
                    print(f"differs: {key} @{b}: {test_at(run, b)} here, {test_at(ref[key], b)} in {args.reference}")
        print(f"\nagainst {args.reference}: {same} shared (run, budget) points equal, {differ} differ")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
