"""Do features of an edit that need no evaluation order sibling edits of one operation?

On new tasks the non-learned prior (an edit scored by its operation's mean accuracy change) ranks sibling edits
as well as the task's own operation means would (``prior_variants.py``, in-task rows), so any room above it is
in which edit of one operation helps *at this chain*. A world model can only learn that from what it sees of an
edit before evaluating it. This measures whether the simplest such features carry the signal at all, on the
training pool's sibling groups (``configs/data/ii_pool.yaml``, every task and split; the transfer set is not
read): over pairs of siblings of one group with the same operation, the share that a feature orders the way a
real evaluation does (0.5 = chance, ties count half).

Features (child chain against its parent):
- ``fluency change``: the frozen LLM's mean log-probability per token of the instruction and steps
  (``tap.chains.fluency``; scoring requests, not example evaluations, through the call cache);
- ``words change``: the number of words of the instruction and steps;
- ``prompt change``: the characters of the messages the chain renders to before the question (system block and
  demonstrations; ``tap.chains.render.prompt_chars``).
The reference row orders the pair by a real evaluation on the first half of the group's examples. Every row is
judged on the second half, so the reference is what a second real evaluation would give.

    python benchmarks/within_chain.py        # about 10 s with the call cache warm; writes results/scorers/
    python benchmarks/within_chain.py --config configs/data/ii_transfer.yaml --samples 0 1 2 3 4 \
        --out benchmarks/results/scorers/within_chain_transfer.md    # after the fact: the same on new tasks
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from meta_runs import shown  # noqa: E402
from stats import mean_ci, same_op_concordance  # noqa: E402

from tap.chains.chain import Chain  # noqa: E402
from tap.chains.fluency import chain_text, fluency  # noqa: E402
from tap.chains.render import prompt_chars  # noqa: E402
from tap.collection.datamodule import TriplesDataModule, collate_siblings  # noqa: E402
from tap.llm.base import LLM  # noqa: E402
from tap.systems.world_model import _split_half_deltas  # noqa: E402
from tap.tasks import task_slug  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "scorers" / "within_chain.md"


def within_op_concordance(ops: Sequence[Sequence[int]], score: Sequence[Sequence[float]],
                          judge: Sequence[Sequence[float]]) -> list[float]:
    """Per group (each a sequence of siblings' operation, score and judged change): the share of its
    same-operation pairs with different judged changes that ``score`` orders as ``judge`` does (ties in
    ``score`` count half). Groups without such a pair are left out.
    """
    per_group = (same_op_concordance(o, s, j) for o, s, j in zip(ops, score, judge))
    return [sum(pairs) / len(pairs) for pairs in per_group if pairs]


def features(llm: LLM) -> dict[str, Callable[[list[Chain], list[Chain]], list[float]]]:
    """Name -> (parents, children) -> one value per child; ``llm`` scores fluency."""
    def flu(parents: list[Chain], children: list[Chain]) -> list[float]:
        unique = {c.to_json(): c for c in (*parents, *children)}  # a parent is shared by its siblings: score once
        score = dict(zip(unique, fluency(llm, list(unique.values()))))
        before, after = [score[c.to_json()] for c in parents], [score[c.to_json()] for c in children]
        return [a - b if a == a and b == b else 0.0 for a, b in zip(after, before)]  # an emptied text: no change

    def words(parents: list[Chain], children: list[Chain]) -> list[float]:
        return [len(chain_text(c).split()) - len(chain_text(p).split()) for p, c in zip(parents, children)]

    def prompt(parents: list[Chain], children: list[Chain]) -> list[float]:
        return [prompt_chars(c) - prompt_chars(p) for p, c in zip(parents, children)]

    return {"fluency change": flu, "words change": words, "prompt change": prompt}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "data" / "ii_pool.yaml")
    ap.add_argument("--samples", type=int, nargs="+", default=None,
                    help="collection seeds of --config to read, together (default: the config's samples)")
    ap.add_argument("--tasks", nargs="+", default=None, help="read only these tasks of --config")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    init = yaml.safe_load(args.config.read_text())["init_args"] | ({"samples": args.samples} if args.samples else {})
    stray = [t for t in args.tasks or [] if t not in init["tasks"]]
    if stray:
        ap.error(f"--tasks must be tasks of {args.config.name}; not in it: {stray}")
    init["tasks"] = args.tasks or init["tasks"]
    dm = TriplesDataModule(**init)
    dm.setup()
    groups = [g for split in ("train", "val", "test") for g in dm.groups[split].items]
    batch = collate_siblings(groups)
    half_a, half_b = (h.tolist() for h in _split_half_deltas(batch))  # sibling order: collate_siblings'
    parents = [Chain.from_json(r["chain"]) for g in groups for r in g]
    children = [Chain.from_json(r["next_chain"]) for g in groups for r in g]
    scores = {name: f(parents, children) for name, f in features(dm.llm).items()}
    scores["a real evaluation (first half)"] = half_a

    def regroup(flat: list) -> list[list]:
        out, i = [], 0
        for g in groups:
            out.append(flat[i : i + len(g)])
            i += len(g)
        return out

    ops = [[r["op_id"] for r in g] for g in groups]
    judge = regroup(half_b)
    tasks = [g[0]["task"] for g in groups]
    out = (f" --samples {' '.join(map(str, dm.samples))}" if args.samples else "") + \
        (f" --tasks {' '.join(args.tasks)}" if args.tasks else "") + \
        (f" --out {shown(args.out)}" if args.out.resolve() != OUT else "")
    lines = [f"Command: `python benchmarks/within_chain.py --config {shown(args.config)}{out}`\n",
             f"{len(groups)} sibling groups of {len(set(tasks))} tasks. Cells: within-operation concordance with "
             "the change measured on the second half of the examples (0.5 = chance), mean over the groups with a "
             "same-operation pair ± 95 % interval over those groups; tasks: how many of the tasks with such pairs "
             "read above / below 0.5.\n",
             "| ordered by | concordance | groups | tasks above / below 0.5 |", "|---|---|---|---|"]
    for name, flat in scores.items():
        per_group = within_op_concordance(ops, regroup(flat), judge)
        mean, half = mean_ci(per_group)
        by_task: dict[str, list[float]] = defaultdict(list)
        for t, o, s, j in zip(tasks, ops, regroup(flat), judge):
            by_task[task_slug(t)] += within_op_concordance([o], [s], [j])
        task_means = [sum(v) / len(v) for v in by_task.values() if v]
        above, below = sum(m > 0.5 for m in task_means), sum(m < 0.5 for m in task_means)
        lines.append(f"| {name} | {mean:.3f} ± {half:.3f} | {len(per_group)} | {above} / {below} |")
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
