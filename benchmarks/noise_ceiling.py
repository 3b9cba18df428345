"""Noise ceiling: how well can ONE real evaluation of a chain be predicted at all?

For each task, ``--chains`` chains (the initial chain, then random chains of the task's edit space) and
``--edits`` single edits of them (drawn by collection's behaviour policy, the way trajectories are
collected) are evaluated on two disjoint sets of search examples, A = the first and B = the next
``max(--n)`` examples of the val order. At each n, the first n examples of A and of B give two
independent evaluations of every chain; their Spearman correlation across chains (accuracy, dense
reward) and across edits (delta = child minus parent on the same examples) is the split-half
reliability: the highest rank correlation that any world model can reach against one evaluation at n.
Every world-model figure is reported next to it. Also: the share of edits whose delta is nonzero at n
(an edit whose delta is zero teaches nothing and cannot be ranked).

Writes ``benchmarks/results/noise_ceiling.json`` (per task, resumable; LLM calls come from the cache)
and prints the table.

    python benchmarks/noise_ceiling.py --tasks ii:sentiment ii:singular_to_plural
    python benchmarks/noise_ceiling.py --report-only
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from tqdm import tqdm

from tap.chains import apply_edit, edit_space, initial_chain
from tap.chains.induce import default_count, induce_instructions
from tap.collection.behaviour import BehaviourPolicy
from tap.env import Environment
from tap.llm import load_llm
from tap.llm.base import GenerationSettings
from tap.machine import machine_info
from tap.paths import update_json
from tap.tasks import Task, load_task


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rank correlation (torchmetrics: average ranks for ties); None when either side is constant
    or there are fewer than 3 points.
    """
    import torch
    from torchmetrics.functional import spearman_corrcoef

    tx, ty = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    if len(x) < 3 or tx.std() == 0 or ty.std() == 0:
        return None
    return float(spearman_corrcoef(tx, ty))


def measure(task_name: str | Task, llm, n_chains: int, n_edits: int, grid: list[int], seed: int,
            max_new_tokens: int = 24) -> dict:
    """Evaluate the chains and edits of one task on both halves; return the per-n reliabilities."""
    task = task_name if isinstance(task_name, Task) else load_task(task_name, seed=seed)
    task_name = task.name
    env = Environment(llm, task, generation=GenerationSettings(max_new_tokens=max_new_tokens))
    half = min(max(grid), len(env.order) // 2)
    grid = [n for n in grid if n <= half] or [half]
    set_a, set_b = env.order[:half], env.order[half : 2 * half]
    induction = induce_instructions(llm, task, n=default_count(task), seed=seed)
    space = edit_space(task, induced=induction.instructions)
    policy = BehaviourPolicy(space)
    rng = random.Random(f"noise:{task_name}:{seed}")
    chains = [initial_chain(task.description)] + [space.random_chain(rng) for _ in range(n_chains - 1)]
    edits = []
    for i in range(n_edits):
        parent = i % len(chains)
        edit = policy.act(chains[parent], rng)
        edits.append((parent, edit, apply_edit(chains[parent], edit)))
    every = chains + [child for _, _, child in edits]
    per_chain = []  # (correct A, correct B, gold_prob A, gold_prob B) per chain
    t0, calls0 = time.time(), llm.calls
    for chain in tqdm(every, desc=task_name, leave=False):
        ea, eb = env.evaluate(chain, set_a), env.evaluate(chain, set_b)
        per_chain.append(([r.correct for r in ea.results], [r.correct for r in eb.results],
                          [r.gold_prob for r in ea.results], [r.gold_prob for r in eb.results]))

    def mean(v, n):
        return sum(v[:n]) / n

    rows = {}
    for n in grid:
        acc = [(mean(c[0], n), mean(c[1], n)) for c in per_chain]
        dense = [(mean(c[2], n), mean(c[3], n)) for c in per_chain]
        delta = [(acc[len(chains) + k][0] - acc[p][0], acc[len(chains) + k][1] - acc[p][1])
                 for k, (p, _, _) in enumerate(edits)]
        delta_dense = [(dense[len(chains) + k][0] - dense[p][0], dense[len(chains) + k][1] - dense[p][1])
                       for k, (p, _, _) in enumerate(edits)]
        rows[str(n)] = {
            "accuracy": spearman(*zip(*acc)), "dense": spearman(*zip(*dense)),
            "delta": spearman(*zip(*delta)), "delta_dense": spearman(*zip(*delta_dense)),
            "nonzero_delta": sum((a != 0) + (b != 0) for a, b in delta) / (2 * len(delta)),
            "acc_mean": sum(a for a, _ in acc) / len(acc),
        }
    return {"task": task_name, "model": llm.name, "chains": len(chains), "edits": len(edits), "half": half,
            "grid": grid, "seed": seed, "by_n": rows, "induced": len(induction.instructions),
            "scales": {s: sum(e.scale == s for _, e, _ in edits) for s in ("instruction", "segment", "token")},
            "llm_calls": llm.calls - calls0, "example_evals": env.example_evals,
            "seconds": round(time.time() - t0, 1), "machine": machine_info(llm.name.rpartition("@")[2] or None)}


def _cell(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def report(rows: dict) -> str:
    lines = ["| task | chains | edits | n | ρ accuracy | ρ dense | ρ edit Δacc | ρ edit Δdense | nonzero Δacc | "
             "mean acc |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows.values(), key=lambda r: r["task"]):
        for n, v in r["by_n"].items():
            lines.append(f"| {r['task']} | {r['chains']} | {r['edits']} | {n} | {_cell(v['accuracy'])} | "
                         f"{_cell(v['dense'])} | {_cell(v['delta'])} | {_cell(v['delta_dense'])} | "
                         f"{v['nonzero_delta']:.2f} | {v['acc_mean']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=[])
    ap.add_argument("--chains", type=int, default=40)
    ap.add_argument("--edits", type=int, default=100)
    ap.add_argument("--n", type=int, nargs="+", default=[8, 16, 32, 64], help="fidelities (examples per half)")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--out", default="benchmarks/results/noise_ceiling.json")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = json.loads(out.read_text()) if out.exists() else {}
    if not args.report_only:
        if args.chains < 3 or args.edits < 3:
            sys.exit("error: --chains and --edits must be at least 3 (a rank correlation needs 3 points).")
        llm = load_llm(args.model)
        for name in tqdm(args.tasks, desc="tasks"):
            key = f"{name}|{args.chains}|{args.edits}|{max(args.n)}|{args.seed}|{llm.name}|{args.max_new_tokens}"
            if key in rows:
                continue
            row = measure(name, llm, args.chains, args.edits, sorted(args.n), args.seed, args.max_new_tokens)
            rows = update_json(out, key, row)  # keeps rows another run wrote meanwhile
    print(report(rows))


if __name__ == "__main__":
    main()
