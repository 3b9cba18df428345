"""Exploratory read-out of addendum 3 (not pre-registered): is the per-group spread of ``model − prior`` the judging
half's noise? Picks each group's top sibling by the relevance model and by the prior (ties averaged), then judges both
picks on the oracle's held-out half (``half_b``, as ``scorers.py`` does) and on all 32 examples (``real``), with
``SelectionGain.group_gains`` as ``scorers.read_outs`` calls it.

    python benchmarks/results/qwen/explore_judge_full.py      # ~5 min at 1 thread; prints both readings
"""

import json
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]
import scorers as sc  # noqa: E402

from tap.metrics import SelectionGain  # noqa: E402

FAMILY = "hierarchical-relevance-qwen-transfer"


def main() -> None:
    torch.set_num_threads(1)
    transfer = sc._datamodule(ROOT / "configs/data/ii_transfer_qwen.yaml", samples=[0, 1, 2, 3]).groups["test"].items
    diffs: dict[str, list[list[float]]] = {"half_b": [], "real": []}
    for ckpt in sc.meta_checkpoints(FAMILY, "benchmarks/results/scorers/PLAN.md"):
        wm, data = sc.load_world_model(ckpt)
        pool = sc.training_pool(json.dumps(data, sort_keys=True))
        p = sc.predictions(wm, transfer, sc.op_table(pool.edit_rows["train"]))
        for judge, d in diffs.items():  # each pick's gain over its group's mean, judged on ``judge`` (ties split)
            model, prior = (SelectionGain.group_gains(p[s], p[judge], p["half_a"], p["group"])[0]
                            for s in ("model", "prior"))
            d.append((model - prior).tolist())
    record = json.loads((ROOT / "benchmarks/results/qwen/confirm-scorers-all.json").read_text())["runs"]
    oracle = statistics.mean(statistics.mean(record[f"{FAMILY}-s{s}"]["transfer"]["prior"]["oracle_gain"])
                             for s in range(3))
    for judge, d in diffs.items():
        per_group = [statistics.mean(seed[g] for seed in d) / oracle for g in range(len(d[0]))]
        m, sd, n = statistics.mean(per_group), statistics.stdev(per_group), len(per_group)
        print(f"judged on {judge}: {n} groups, mean {m:+.3f}, sd {sd:.3f}, 95 % half-width {1.96 * sd / n ** 0.5:.3f},"
              f" groups for 80 % power at +0.055: {(2.8 * sd / 0.055) ** 2:.0f}")


if __name__ == "__main__":
    main()
