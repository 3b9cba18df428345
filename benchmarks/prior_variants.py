"""Does the non-learned prior rank sibling edits better when it also knows the chain?

The world model's prior (``WorldModel.op_prior``) scores an edit by the mean accuracy change of its
operation over the training edits. A chain-conditioned variant counts that mean separately per context
of the parent chain: ``demos`` (has it a demonstration yet?) or ``demos3`` (0, 1 or 2+ demonstrations).
In the pool's training data the first demonstration helps far more than later ones, so conditioning
looks promising; the question is whether it ranks siblings better on tasks not counted from.

Counted on the pool's training tasks (``configs/data/ii_pool.yaml`` without ``--val-tasks``), scored
on the held-out pool tasks and on the transfer set (``configs/data/ii_transfer.yaml``), with the same
read-outs as ``meta_world_model.py``: the selection gain (``tap.metrics.SelectionGain``, split-half
examples) and the within-group sibling Spearman. No LLM call, no training; a few seconds.

A ceiling for any prior of this kind (set ``transfer (in-task)``): on the transfer set, whose config serves
several independent samples, each sample's siblings are scored by the same tables counted on *the same task's
other samples*. That is what an operation-level prior could know if it were adapted to the task perfectly (from
two more collections of it, which no new task has); a learned model whose task conditioning only moved the
operation means could not beat it.

    python benchmarks/prior_variants.py
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from tap.chains.chain import Chain  # noqa: E402
from tap.collection.datamodule import TriplesDataModule, collate_siblings  # noqa: E402
from tap.metrics import SelectionGain, SiblingRankAgreement  # noqa: E402
from tap.systems.world_model import _split_half_deltas  # noqa: E402
from tap.tasks import task_slug  # noqa: E402

VAL = ["ii:cause_and_effect", "bigbench:arithmetic/1_digit_subtraction", "ii:synonyms"]
CONTEXTS = {"none": lambda c: 0, "demos": lambda c: int(bool(c.demos)), "demos3": lambda c: min(len(c.demos), 2)}


def _datamodule(config: Path, **overrides) -> TriplesDataModule:
    args = yaml.safe_load(config.read_text())["init_args"] | overrides
    dm = TriplesDataModule(**args)
    dm.setup()
    return dm


def prior_table(rows: list[dict], context) -> dict[tuple[int, int], float]:
    """(op id, context) -> mean accuracy change over ``rows`` (training edits)."""
    total: dict = defaultdict(float)
    count: dict = defaultdict(int)
    for r in rows:
        key = (r["op_id"], context(Chain.from_json(r["chain"])))
        total[key] += r["next_reward"] - r["reward"]
        count[key] += 1
    return {k: total[k] / count[k] for k in total}


def sibling_read_outs(score: torch.Tensor, half_a: torch.Tensor, half_b: torch.Tensor, real: torch.Tensor,
                      group: torch.Tensor, task: torch.Tensor) -> dict[str, float]:
    """Selection gain (picked on ``half_a``'s oracle, judged on ``half_b``) and within-group Spearman against
    ``real`` of ranking siblings by ``score``, all (N,): pooled (``gain``, ``rho``) and per task id
    (``gain/<i>``, ``rho/<i>``), as ``meta_world_model.py`` reads them.
    """
    gain, rho = SelectionGain(), SiblingRankAgreement()
    gain.update(score, half_b, half_a, group, task)
    rho.update(score, real, group, task)
    out = {k: float(v) for k, v in gain.compute().items() if k.startswith("gain")}
    out |= {"rho" + k.removeprefix("spearman"): float(v) for k, v in rho.compute().items() if k.startswith("spearman")}
    return out


def score(groups: list[list[dict]], tables: dict | Callable, context) -> dict[str, dict[str, float]]:
    """Selection gain and sibling Spearman per task slug of ``groups``, ranking each sibling by its prior table:
    ``tables`` is one table for every sibling, or (task, sample) -> table (``in_task_tables``).
    """
    batch = collate_siblings(groups)
    parents = [Chain.from_json(row[0]) for row in batch["chain_json"]]
    ops = batch["edit_op"][:, 0].tolist()
    keys = [(r["task"], r.get("sample", 0)) for g in groups for r in g]  # collate_siblings' order
    table_of = tables if callable(tables) else lambda key: tables
    pred = torch.tensor([table_of(k).get((op, context(p)), 0.0) for k, op, p in zip(keys, ops, parents)])
    delta_a, delta_b = _split_half_deltas(batch)
    real = batch["reward"][:, 1] - batch["reward"][:, 0]
    names = sorted(set(batch["task"]))
    tid = torch.tensor([names.index(t) for t in batch["task"]])
    out = sibling_read_outs(pred, delta_a, delta_b, real, batch["group"], tid)
    return {task_slug(t): {k: out.get(f"{k}/{i}", float("nan")) for k in ("gain", "rho")} for i, t in enumerate(names)}


def in_task_tables(groups: list[list[dict]], context) -> dict[tuple[str, int], dict]:
    """(task, sample) -> the prior table counted on every edit of the same task's *other* samples in ``groups``."""
    rows: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for g in groups:
        for r in g:
            rows[(r["task"], r.get("sample", 0))].append(r)
    return {key: prior_table([r for k, rs in rows.items() if k[0] == key[0] and k != key for r in rs], context)
            for key in rows}


def first_demo_effect(rows: list[dict]) -> str:
    """The mean accuracy change of adding a demonstration to a chain without one and to a chain with one."""
    parts = []
    for label, first in (("the first demonstration", True), ("one more", False)):
        deltas = [r["next_reward"] - r["reward"] for r in rows
                  if r["op"] == "add_example" and (not Chain.from_json(r["chain"]).demos) == first]
        parts.append(f"{label} {sum(deltas) / max(len(deltas), 1):+.3f} ({len(deltas)} edits)")

    return "Adding " + ", ".join(parts) + "."


def _nanmean(values: list[float]) -> float:
    """Mean over the tasks where the read-out is defined (the selection gain is not where no sibling moved)."""
    kept = [v for v in values if v == v]
    return sum(kept) / len(kept) if kept else float("nan")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--val-tasks", nargs="*", default=VAL, help="pool tasks held out of the counting")
    args = ap.parse_args(argv)
    pool = _datamodule(ROOT / "configs" / "data" / "ii_pool.yaml", val_tasks=args.val_tasks)
    transfer = _datamodule(ROOT / "configs" / "data" / "ii_transfer.yaml")
    held = [g for g in pool.groups["val"].items if g[0]["task"] in args.val_tasks]  # not the others' val part
    sets = {"held-out pool": held, "transfer": transfer.groups["test"].items}
    trained = [r for split in ("train", "val", "test") for r in pool.edit_rows[split]
               if r["task"] not in args.val_tasks]
    print(f"In every edit of the {len(pool.tasks) - len(args.val_tasks)} training tasks: {first_demo_effect(trained)}")
    print(f"Counted on {len(pool.edit_rows['train'])} training edits of "
          f"{len(pool.tasks) - len(args.val_tasks)} pool tasks. Cells: selection gain / sibling Spearman.\n")
    print("| context | set | task | selection gain | sibling ρ |\n|---|---|---|---|---|")
    for name, context in CONTEXTS.items():
        table = prior_table(pool.edit_rows["train"], context)
        runs = [(label, groups, table) for label, groups in sets.items()]
        if len(transfer.samples) > 1:  # the ceiling: each task's own operation means, from its other samples
            in_task = in_task_tables(sets["transfer"], context)
            runs.append(("transfer (in-task)", sets["transfer"], in_task.__getitem__))
        for label, groups, tables in runs:
            per_task = score(groups, tables, context)
            for slug, m in per_task.items():
                print(f"| {name} | {label} | {slug} | {m['gain']:.2f} | {m['rho']:.2f} |")
            mean = {k: _nanmean([m[k] for m in per_task.values()]) for k in ("gain", "rho")}
            print(f"| {name} | {label} | **mean** | **{mean['gain']:.2f}** | **{mean['rho']:.2f}** |")


if __name__ == "__main__":
    main()
