"""Exploratory, on the Qwen pool only (the transfer set is not read): does the operation prior pick better siblings
when it also knows what the parent chain measured before the edit (its accuracy, its answer-format compliance)?
Those are known when a search chooses among a verified chain's edits, cost no LLM call, and no model reads them.

Leave-one-task-out over the 7 pool tasks: each table is counted on the other six tasks' sibling edits and scores the
held-out task's 168 sibling groups in all; selection gain with ties split evenly (``SelectionGain.group_gains``: picked
on the first half of the examples, judged on the second), each scorer paired with the plain operation prior per group,
over the oracle's mean gain. Scorers: ``op`` (the prior); ``op|acc3`` (its mean per operation and parent-accuracy band
≤ 0.2 / ≤ 0.6 / above, shrunk to the operation's mean with 5 pseudo-counts); ``op|comp`` (per compliance < 0.5 or not);
``op+lin(acc)`` (per operation, the change linear in the parent's accuracy, slope ridge-shrunk).

    python benchmarks/results/qwen/explore_parent_state.py      # ~10 s
"""

import statistics
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]
from prior_variants import _datamodule  # noqa: E402

from tap.collection.datamodule import collate_siblings  # noqa: E402
from tap.metrics import SelectionGain  # noqa: E402
from tap.systems.world_model import _split_half_deltas  # noqa: E402

Row = dict
Scorer = Callable[[Row], float]


def banded(rows: list[Row], band: Callable[[Row], int], k: float = 5.0) -> Scorer:
    """Mean change per (operation, band of the parent), shrunk to the operation's mean with ``k`` pseudo-counts."""
    tot, cnt, op_tot, op_cnt = defaultdict(float), defaultdict(int), defaultdict(float), defaultdict(int)
    for r in rows:
        d, key = r["next_reward"] - r["reward"], (r["op_id"], band(r))
        tot[key] += d
        cnt[key] += 1
        op_tot[r["op_id"]] += d
        op_cnt[r["op_id"]] += 1

    def score(r: Row) -> float:
        mean = op_tot[r["op_id"]] / op_cnt[r["op_id"]] if op_cnt[r["op_id"]] else 0.0
        key = (r["op_id"], band(r))
        return (tot[key] + k * mean) / (cnt[key] + k)

    return score


def linear(rows: list[Row], lam: float = 1.0) -> Scorer:
    """Per operation, the change as a + b · (parent accuracy − 0.5), the slope ridge-shrunk by ``lam``."""
    by_op = defaultdict(list)
    for r in rows:
        by_op[r["op_id"]].append((r["reward"] - 0.5, r["next_reward"] - r["reward"]))
    coef = {}
    for op, xy in by_op.items():
        mx, my = statistics.mean(x for x, _ in xy), statistics.mean(y for _, y in xy)
        b = sum((x - mx) * (y - my) for x, y in xy) / (sum((x - mx) ** 2 for x, _ in xy) + lam)
        coef[op] = (my - b * mx, b)
    return lambda r: (lambda a, b: a + b * (r["reward"] - 0.5))(*coef.get(r["op_id"], (0.0, 0.0)))


def acc3(r: Row) -> int:
    return 0 if r["reward"] <= 0.2 else 1 if r["reward"] <= 0.6 else 2


SCORERS: dict[str, Callable[[list[Row]], Scorer]] = {
    "op": lambda rows: banded(rows, lambda r: 0),
    "op|acc3": lambda rows: banded(rows, acc3),
    "op|comp": lambda rows: banded(rows, lambda r: int(r["compliance"] >= 0.5)),
    "op+lin(acc)": linear,
}


def main() -> None:
    dm = _datamodule(ROOT / "configs/data/ii_pool_qwen.yaml", split_fractions=[0.0, 0.0])
    groups = dm.groups["train"].items
    tasks = sorted({g[0]["task"] for g in groups})
    gains: dict[str, list[tuple[str, float, float]]] = {s: [] for s in SCORERS}  # (task, gain, oracle's gain)
    for task in tasks:
        scorers = {s: make([r for g in groups if g[0]["task"] != task for r in g]) for s, make in SCORERS.items()}
        for g in (g for g in groups if g[0]["task"] == task):
            a, b = _split_half_deltas(collate_siblings([g]))  # each sibling's change on either half, (6,) each
            gid = torch.zeros(len(g), dtype=torch.long)
            for s, score in scorers.items():
                model, oracle = SelectionGain.group_gains(torch.tensor([score(r) for r in g]), b, a, gid)
                gains[s].append((task, float(model[0]), float(oracle[0])))
    oracle = statistics.mean(o for _, _, o in gains["op"])
    for s, v in gains.items():
        diff = [(m - gains["op"][i][1]) / oracle for i, (_, m, _) in enumerate(v)]
        half = 1.96 * statistics.stdev(diff) / len(diff) ** 0.5
        print(f"{s:12s} selection gain {statistics.mean(m for _, m, _ in v) / oracle:.3f}, − op "
              f"{statistics.mean(diff):+.3f} ± {half:.3f} over {len(diff)} groups")


if __name__ == "__main__":
    main()
