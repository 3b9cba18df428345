"""Train the three world models on the same data and encoder, then report how well each predicts
what edits do, per task, on held-out trajectories and on a task never trained on.

For each model (``hierarchical``, ``flat``, ``demo``) and seed: ``train.py fit`` with
``configs/world_model.yaml`` (checkpoints under ``checkpoints/report/<model>-s<seed>``), then
``train.py test`` on each dev-suite task's test trajectories and on the transfer task
(``configs/data/transfer.yaml``). Metrics: held-out reward Spearman (imagined chains, 1..3 edits
ahead of an observed chain), edit-effect Spearman (predicted vs real reward change of one edit),
latent error (1 - cosine to the encoder's latent of the real chain) at horizons 1 and 3, and the
error of predicting "no change" at the same horizons for reference. The records in
``results/world_model.json`` are on the BIG-bench dev suite and object_counting, the default data of
``configs/world_model.yaml`` and ``configs/data/transfer.yaml`` until 2026-12-05; a run now is on today's defaults
(four shipped pool tasks; ii:first_word_letter never trained on), each row named by its task.

    python benchmarks/world_model_report.py                     # needs checkpoints/encoder (configs/encoder.yaml)
    python benchmarks/world_model_report.py --seeds 0 1 2 --models hierarchical flat demo
    python benchmarks/world_model_report.py --models hierarchical --tag pretrained-encoder \
        -- --model.init_args.encoder=minilm                     # a variant: untrained (frozen MiniLM) encoder
    python benchmarks/world_model_report.py --report-only       # the table from results/world_model.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "world_model.json"
COLUMNS = (("reward/spearman", "reward ρ"), ("dense/spearman", "dense ρ"), ("edit/spearman", "edit ρ"),
           ("reward/mae", "reward MAE"),
           ("latent_error/h1", "latent err h1"), ("latent_error/h3", "latent err h3"),
           ("latent_error_copy/h1", "no-change err h1"), ("latent_error_copy/h3", "no-change err h3"))


def _cli(args: list[str]) -> dict[str, float]:
    from tap.cli import main

    sys.argv = ["train.py"]
    cli = main(args)
    return {k: float(v) for k, v in cli.trainer.callback_metrics.items()}


def run(model: str, seed: int, epochs: int | None, extra: list[str], tag: str = "") -> dict:
    config = str(ROOT / "configs" / "world_model.yaml")
    name = f"{model}{'-' + tag if tag else ''}-s{seed}"
    ckpt_dir = ROOT / "checkpoints" / "report" / name
    common = ["--config", config, f"--model.init_args.world_model={model}", f"--seed_everything={seed}",
              "--trainer.enable_progress_bar=false", *extra]
    start = time.time()
    fit = ["fit", *common, f"--checkpoint.dirpath={ckpt_dir}",
           f"--trainer.logger.init_args.name=report-{name}"]
    if epochs:
        fit.append(f"--trainer.max_epochs={epochs}")
    fit_metrics = _cli(fit)
    fit_seconds = time.time() - start
    from tap.systems.checkpoints import find_checkpoint

    ckpt = str(find_checkpoint(ckpt_dir))
    tasks = yaml.safe_load(Path(config).read_text())["data"]["init_args"]["tasks"]
    result = {"model": model + (f" ({tag})" if tag else ""), "seed": seed, "overrides": extra,
              "checkpoint": ckpt, "fit_seconds": round(fit_seconds, 1),
              "val": {k: v for k, v in fit_metrics.items() if k.startswith("val/")}, "test": {}}
    for task in tasks:
        result["test"][task] = _test_metrics(_cli(["test", *common, f"--data.init_args.tasks=[{task}]",
                                                   f"--ckpt_path={ckpt}"]))
    transfer_yaml = ROOT / "configs" / "data" / "transfer.yaml"
    transfer = yaml.safe_load(transfer_yaml.read_text())["init_args"]["tasks"][0]
    result["test"][f"{transfer} (never trained on)"] = _test_metrics(
        _cli(["test", *common, "--data", str(transfer_yaml), f"--ckpt_path={ckpt}"]))
    return result


def _test_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """``test/...`` metrics over the whole test set (per-task breakdowns dropped: one task per run here)."""
    return {k[len("test/"):]: v for k, v in metrics.items() if k.startswith("test/") and k.count("/") <= 2}


def _fmt(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def report(results: list[dict]) -> str:
    models = list(dict.fromkeys(r["model"] for r in results))
    tasks = list(dict.fromkeys(t for r in results for t in r["test"]))
    seeds = sorted({r["seed"] for r in results})
    lines = [f"Seeds: {seeds} (mean ± sd over seeds where more than one).", "",
             "| task | model | " + " | ".join(c[1] for c in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for task in tasks:
        for model in models:
            rows = [r["test"][task] for r in results if r["model"] == model and task in r["test"]]
            cells = [_fmt([row.get(key, float("nan")) for row in rows]) for key, _ in COLUMNS]
            lines.append(f"| {task.split(':')[-1]} | {model} | " + " | ".join(cells) + " |")
    dev = [t for t in tasks if "never trained" not in t]
    lines += ["", "Dev-suite mean over its tasks (per seed, then mean ± sd over seeds):", "",
              "| model | reward ρ | dense ρ | edit ρ | latent err h1 | latent err h3 |", "|---|---|---|---|---|---|"]
    for model in models:
        runs = [r for r in results if r["model"] == model]
        cells = []
        for key in ("reward/spearman", "dense/spearman", "edit/spearman", "latent_error/h1", "latent_error/h3"):
            cells.append(_fmt([statistics.mean(r["test"][t].get(key, float("nan")) for t in dev) for r in runs]))
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=["hierarchical", "flat", "demo"])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=None, help="override trainer.max_epochs")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--tag", default="", help="name for a variant run with extra overrides (kept apart)")
    parser.add_argument("extra", nargs="*", help="more CLI overrides for train.py, after --")
    args = parser.parse_args()
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else []
    if not args.report_only:
        for seed in args.seeds:
            for model in args.models:
                label = model + (f" ({args.tag})" if args.tag else "")
                results = [r for r in results if (r["model"], r["seed"]) != (label, seed)]
                results.append(run(model, seed, args.epochs, args.extra, args.tag))
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(results, indent=1) + "\n")  # kept after every run
    print(report(results))


if __name__ == "__main__":
    main()
