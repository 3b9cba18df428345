"""How much of a meta-trained world model's learned correction should a ranker trust?

A world model trained with ``effect_prior`` ranks an edit by prior + residual: the operation's mean
change plus what its effect head learnt about the chain and the task. This scores prior + w x residual
for w in a grid, per checkpoint, with no retraining, on three sets of sibling groups:

- ``heldout``: the pool tasks held out of training whole (``--val-tasks``);
- ``val``: the whole validation split the fit selected its epoch on (those tasks, plus one validation
  trajectory of each training task);
- ``transfer``: the transfer set (``configs/data/ii_transfer.yaml``), never trained or tuned on.

If the w that the validation data prefers also ranks the transfer set best, the weight could be fitted
on validation; if not, what the pool teaches does not carry over. Read-outs as in
``meta_world_model.py``: the selection gain pooled over the set's groups, and the within-group
sibling Spearman. No LLM call.

    python benchmarks/residual_weight.py --tags hierarchical-pool-transfer hierarchical-pool-ordered-transfer
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from prior_variants import VAL, _datamodule, sibling_read_outs  # noqa: E402

from tap.collection.datamodule import collate_siblings  # noqa: E402
from tap.systems.world_model import WorldModel, _split_half_deltas  # noqa: E402

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


@torch.no_grad()
def predictions(wm: WorldModel, groups: list[list[dict]], chunk: int = 64) -> dict[str, torch.Tensor]:
    """Residual and prior per sibling, the split-half changes, the measured change, group ids (all (N,))."""
    out: dict[str, list[torch.Tensor]] = {k: [] for k in ("residual", "prior", "half_a", "half_b", "real", "group")}
    offset = 0
    for i in range(0, len(groups), chunk):
        batch = collate_siblings(groups[i : i + chunk])
        sib = wm.sibling_features(batch)
        a, b = _split_half_deltas(batch)
        for key, val in (("residual", sib["residual"][:, 0]), ("prior", wm.op_prior(sib["op"])), ("half_a", a),
                         ("half_b", b), ("real", sib["real"][:, 0]), ("group", batch["group"] + offset)):
            out[key].append(val.float().cpu())
        offset += int(batch["group"].max()) + 1
    return {k: torch.cat(v) for k, v in out.items()}


def read_outs(p: dict[str, torch.Tensor], w: float) -> tuple[float, float]:
    """(pooled selection gain, sibling Spearman) of prior + w * residual."""
    out = sibling_read_outs(p["prior"] + w * p["residual"], p["half_a"], p["half_b"], p["real"], p["group"],
                            torch.zeros_like(p["group"]))
    return out["gain"], out["rho"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tags", nargs="+", required=True, help="checkpoint folders checkpoints/meta/<tag>-s<seed>")
    ap.add_argument("--val-tasks", nargs="*", default=VAL)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    pool = _datamodule(ROOT / "configs" / "data" / "ii_pool.yaml", val_tasks=args.val_tasks)
    transfer = _datamodule(ROOT / "configs" / "data" / "ii_transfer.yaml")
    sets = {"heldout": [g for g in pool.groups["val"].items if g[0]["task"] in args.val_tasks],
            "val": pool.groups["val"].items, "transfer": transfer.groups["test"].items}
    print("Cells: pooled selection gain / sibling Spearman of prior + w x residual.\n")
    print("| checkpoint | set | " + " | ".join(f"w = {w}" for w in WEIGHTS) + " |")
    print("|---|---|" + "---|" * len(WEIGHTS))
    for tag in args.tags:
        for ckpt in sorted((ROOT / "checkpoints" / "meta").glob(f"{tag}-s*")):
            wm = WorldModel.from_checkpoint(ckpt)
            if not wm.hparams.effect_prior:
                print(f"| {ckpt.name} | - | skipped: not trained beyond the prior (effect_prior) |")
                continue
            for name, groups in sets.items():
                p = predictions(wm, groups)
                cells = [read_outs(p, w) for w in WEIGHTS]
                print(f"| {ckpt.name} | {name} | " + " | ".join(f"{g:.2f} / {r:.2f}" for g, r in cells) + " |")


if __name__ == "__main__":
    main()
