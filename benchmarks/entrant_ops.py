"""Which operations did a search's rounds spend their entrants on? Read from ``compare.py``'s saved runs.

For every method under the given result folders, over the rounds after the first (the first ranks before anything
is measured): how many rounds had ``--bunch`` or more single-edit entrants of one operation, and the mean number of
distinct operations among a round's entrants (every edit of every entrant counts). This is what
``benchmarks/results/batch/PLAN.md`` reports beside its rules. No LLM call; a second.

    python benchmarks/entrant_ops.py benchmarks/results/batch/arith benchmarks/results/batch/arith2
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path


def round_stats(rounds: list[dict], bunch: int) -> tuple[int, int, list[int]]:
    """(rounds after the first with entrants, those with ``bunch``+ single edits of one operation, distinct
    operations per such round).
    """
    n, bunched, distinct = 0, 0, []
    for r in rounds[1:]:
        verified = r.get("verified") or []
        if not verified:
            continue
        n += 1
        singles = Counter(f"{v['edits'][0]['scale']}.{v['edits'][0]['op']}" for v in verified if len(v["edits"]) == 1)
        bunched += bool(singles) and max(singles.values()) >= bunch
        distinct.append(len({f"{e['scale']}.{e['op']}" for v in verified for e in v["edits"]}))
    return n, bunched, distinct


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+", help="compare.py --out folders (each holds <task>/<method>-s<seed>.json)")
    p.add_argument("--bunch", type=int, default=5, help="single-edit entrants of one operation that count as bunched")
    args = p.parse_args(argv)
    table: dict[tuple[str, str], list] = defaultdict(lambda: [0, 0, [], 0])
    for folder in args.folders:
        for path in sorted(Path(folder).glob("*/*.json")):
            run = json.loads(path.read_text())
            rounds = run.get("config", {}).get("rounds")
            if not rounds:  # a search that keeps no rounds (a baseline of another kind)
                continue
            n, bunched, distinct = round_stats(rounds, args.bunch)
            row = table[(run["task"], run["method"])]
            row[0] += n
            row[1] += bunched
            row[2] += distinct
            row[3] += 1
    print(f"| task | method | runs | rounds after the first | with >= {args.bunch} single edits of one operation "
          "| distinct operations per round |")
    print("|---|---|---|---|---|---|")
    for (task, method), (n, bunched, distinct, runs) in sorted(table.items()):
        mean = sum(distinct) / len(distinct) if distinct else float("nan")
        print(f"| {task} | {method} | {runs} | {n} | {bunched} | {mean:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
