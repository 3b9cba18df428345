"""Training throughput on CPU: windows (and chains) per second and peak memory, for the encoder
(MiniLM with LoRA, MiniLM frozen, the tiny hash encoder) and the three world models.

Each case runs in its own process (so peak RSS is per case) on real dev-suite triples (collected
by ``python train.py fit --config configs/world_model.yaml`` or ``python -m tap.collect``), does
``--warmup`` optimizer steps, then times ``--steps`` steps of forward + backward + AdamW. The world
model cases use a frozen MiniLM encoder whose text vectors are memoised, as in real training from the
second epoch on; ``cold`` rows time the first epoch, which also encodes each distinct text once.
Do not run anything else meanwhile.

    python benchmarks/train_throughput.py                 # all cases, ~5 minutes on 2 cores
    python benchmarks/train_throughput.py --cases wm-hierarchical
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tap.machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "encoder-minilm-lora": ("encoder", {"backbone": "minilm", "lora_rank": 8}),
    "encoder-minilm-frozen": ("encoder", {"backbone": "minilm", "lora_rank": 0}),
    "encoder-hash": ("encoder", {"backbone": "hash"}),
    "wm-hierarchical-cold": ("world_model", {"encoder": "minilm", "world_model": "hierarchical"}),
    "wm-hierarchical": ("world_model", {"encoder": "minilm", "world_model": "hierarchical"}),
    "wm-flat": ("world_model", {"encoder": "minilm", "world_model": "flat"}),
    "wm-demo": ("world_model", {"encoder": "minilm", "world_model": "demo"}),
}


def measure(case: str, steps: int, warmup: int) -> dict:
    import torch

    from tap.collection.datamodule import TriplesDataModule
    from tap.systems import ContrastiveEncoder, WorldModel

    kind, kwargs = CASES[case]
    config = yaml.safe_load((ROOT / "configs" / f"{kind}.yaml").read_text())
    torch.manual_seed(0)
    dm = TriplesDataModule(**config["data"]["init_args"])
    dm.setup()
    model = ContrastiveEncoder(**kwargs) if kind == "encoder" else WorldModel(**kwargs)
    model.train()
    if kind == "world_model" and not case.endswith("-cold"):  # memoise every text, as after one epoch
        from tap.systems.batch import window_views

        with torch.no_grad():
            for batch in dm.train_dataloader():
                model.encoder(*window_views(batch))
                model._payload_vectors([p for row in batch["edit_payload"] for p in row])
    opt = model.configure_optimizers()
    batches = iter(dm.train_dataloader())
    windows = chains = 0
    start = None
    for i in range(warmup + steps):
        if i == warmup:
            windows = chains = 0
            start = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(dm.train_dataloader())
            batch = next(batches)
        loss = model.training_step(batch, 0)  # self.log is a no-op without a Trainer
        opt.zero_grad()
        loss.backward()
        opt.step()
        windows += batch["reward"].shape[0]
        chains += batch["reward"].numel()
    seconds = time.perf_counter() - start
    return {"case": case, "batch_size": config["data"]["init_args"]["batch_size"],
            "window": config["data"]["init_args"]["window"], "steps": steps,
            "windows_per_s": round(windows / seconds, 2), "chains_per_s": round(chains / seconds, 2),
            "steps_per_s": round(steps / seconds, 3), "threads": torch.get_num_threads(),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "machine": machine_info(dtype="float32")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_throughput.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.steps, args.warmup)))
        return
    rows = []
    for case in args.cases:
        proc = subprocess.run([sys.executable, __file__, "--child", case, "--steps", str(args.steps),
                               "--warmup", str(args.warmup)], capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{case} failed:\n{proc.stderr[-3000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    print("\n| case | batch (windows x chains) | windows/s | chains/s | steps/s | peak RSS |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['batch_size']} x {r['window'] + 1} | {r['windows_per_s']} | {r['chains_per_s']} | "
              f"{r['steps_per_s']} | {r['peak_rss_mb']} MB |")


if __name__ == "__main__":
    main()
