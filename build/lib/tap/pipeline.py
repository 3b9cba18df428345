"""The whole pipeline on the offline defaults, in one command: collect triples from the frozen LLM,
train the contrastive encoder and the world model, plan a chain under a budget, print the result.

    python -m tap.pipeline                       # 1-digit addition, SmolLM2-135M-Instruct, budget 30
    python -m tap.pipeline --task bigbench:NAME --budget 60 --seed 1

Each stage is the same command a user would run by hand (``train.py fit`` with ``configs/encoder.yaml``
and ``configs/world_model.yaml`` on ``configs/data/quickstart.yaml``, then ``plan.py``), with
checkpoints under ``checkpoints/quickstart/`` and logs under ``runs/quickstart/``. A stage whose
checkpoint exists is skipped, and every LLM call is cached, so a rerun or an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tap.errors import TapError

ROOT = Path(__file__).resolve().parents[1]


def _fit(config: str, args: argparse.Namespace, window: int, epochs: int, ckpt_dir: Path, *extra: str) -> None:
    from tap.cli import main as cli_main

    argv, sys.argv = sys.argv, ["train.py"]
    try:
        cli_main(["fit", "--config", str(ROOT / "configs" / config), "--data",
                  str(ROOT / "configs" / "data" / "quickstart.yaml"), f"--data.init_args.tasks=[{args.task}]",
                  f"--data.init_args.trajectories={args.trajectories}", f"--data.init_args.data_dir={args.data_dir}",
                  f"--data.init_args.window={window}", f"--trainer.max_epochs={epochs}",
                  f"--seed_everything={args.seed}", f"--checkpoint.dirpath={ckpt_dir}",
                  f"--trainer.logger.init_args.save_dir={args.runs}", *extra])
    finally:
        sys.argv = argv


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="bigbench:arithmetic/1_digit_addition")
    p.add_argument("--budget", type=int, default=30, help="real chain evaluations for the planner")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--encoder-epochs", type=int, default=3)
    p.add_argument("--world-model-epochs", type=int, default=20)
    p.add_argument("--trajectories", type=int, default=24, help="trajectories of 6 edits to collect")
    p.add_argument("--backbone", choices=["minilm", "hash"], default="minilm",
                   help="encoder text backbone: MiniLM + LoRA, or the tiny from-scratch hashing encoder")
    p.add_argument("--out", default="checkpoints/quickstart", help="where the checkpoints go")
    p.add_argument("--runs", default="runs/quickstart", help="where logs and the plan go")
    p.add_argument("--data-dir", default="data", help="where collected triples go")
    p.add_argument("--force", action="store_true", help="retrain even if the checkpoints exist")
    args = p.parse_args(argv)
    out = Path(args.out)
    times: dict[str, float] = {}
    try:
        from tap.systems.checkpoints import find_checkpoint

        def have(d: Path) -> bool:
            try:
                return not args.force and find_checkpoint(d).exists()
            except TapError:
                return False

        stages = [("collect + encoder", "1/3 collect triples (if not cached) and train the contrastive encoder",
                   "encoder.yaml", 6, args.encoder_epochs, f"--model.init_args.backbone={args.backbone}"),
                  ("world model", "2/3 train the world model", "world_model.yaml", 3, args.world_model_epochs,
                   f"--model.init_args.encoder={out / 'encoder'}")]
        for (name, title, config, window, epochs, extra), folder in zip(stages, ("encoder", "world_model")):
            start = time.time()
            if not have(out / folder):
                print(f"== {title} ==", flush=True)
                _fit(config, args, window, epochs, out / folder, extra)
            times[name] = time.time() - start
        start = time.time()
        print(f"== 3/3 plan: {args.task}, budget {args.budget}, seed {args.seed} ==", flush=True)
        from tap.planning import cli as plan

        code = plan.run(plan.parse_args(["--task", args.task, "--checkpoint", str(out / "world_model"),
                                         "--budget", str(args.budget), "--seed", str(args.seed),
                                         "--out", f"{args.runs}/plan-s{args.seed}"]))
        times["plan"] = time.time() - start
    except TapError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))
    return code


if __name__ == "__main__":
    sys.exit(main())
