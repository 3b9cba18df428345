"""Meta-train world models on the training pool, then ask how well each ranks the sibling edits of a
chain on tasks it never saw, next to a non-learned prior and the noise ceiling.

For each model (``hierarchical``, ``flat``, ``demo``) and seed: ``train.py fit`` with
``configs/world_model.yaml`` on the pool (``configs/data/ii_pool.yaml``; checkpoints under
``checkpoints/meta/<model>-s<seed>``), then ``train.py test`` on the transfer set
(``configs/data/ii_transfer.yaml``: every trajectory is test data, nothing was trained or tuned on it).
With ``--loo TASK ...`` (no task: every pool task): for each task, fit on the pool without it and
test on its trajectories (leave-one-task-out). Nothing is collected on a held-out task before the
model predicts there: it sees the task only as a few train input/output pairs.

The checkpoint kept is the epoch with the best sibling-ranking Spearman on the pool's validation
trajectories (the question the search asks), unless ``--checkpoint.monitor`` is given after ``--``.

Per held-out task, on its sibling groups (edits of one parent chain measured on the same 32
examples): the **selection gain** (the measured change of the model's top-1 sibling above the
group mean on the second half of the examples, as a share of the same for an oracle that picks on
the first half), the within-group **sibling Spearman**, the **edit Spearman** pooled over the task's
edits (next to the noise ceiling: the split-half Spearman of one edit's accuracy change at 32
examples, ``benchmarks/results/noise_ceiling.json``), and the **calibration** of the 80 %
interval (coverage, Spearman of the predicted spread with the absolute error). The **prior** row
is the non-learned baseline scored on the same groups: each edit ranked by its operation's mean
accuracy change over the training edits. Means with 95 % Student-t intervals over seeds; the
paired difference model - prior per seed.

    python benchmarks/meta_world_model.py --seeds 0 1 2                         # transfer set
    python benchmarks/meta_world_model.py --models hierarchical --loo ii:sentiment
    python benchmarks/meta_world_model.py --tag minilm -- --model.init_args.encoder=minilm
    python benchmarks/meta_world_model.py --pool ii:sentiment ii:cause_and_effect   # a part of the pool
    python benchmarks/meta_world_model.py --val-tasks ii:cause_and_effect   # validate on a task not trained on
    python benchmarks/meta_world_model.py --report-only
    python benchmarks/meta_world_model.py --pool-config configs/data/ii_pool_qwen.yaml \
        --transfer-config configs/data/ii_transfer_qwen.yaml --tag qwen --out benchmarks/results/qwen/meta.json
                                    # another frozen LLM: its pool and transfer set (one LLM's data only)
    python benchmarks/meta_world_model.py --seeds 0 1 2 --test-only   # test the fitted checkpoints again
    python benchmarks/meta_world_model.py --seeds 0 1 2 --fit-only    # fit now, test later with --test-only
    python benchmarks/meta_world_model.py --seeds 0 1 2 --test-only --test-samples 0 2   # some samples only
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from stats import fmt  # noqa: E402 - benchmarks/ is on the path from here on

from tap.llm.provision import model_slug  # noqa: E402
from tap.machine import machine_info  # noqa: E402
from tap.tasks import task_slug  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "meta_world_model.json"
NOISE = ROOT / "benchmarks" / "results" / "noise_ceiling.json"
POOL = ROOT / "configs" / "data" / "ii_pool.yaml"
TRANSFER = ROOT / "configs" / "data" / "ii_transfer.yaml"
#: (metric key under test/, column title); the prior's are the same keys under test/prior/
METRICS = (("selection/gain", "selection gain"), ("sibling/spearman", "sibling ρ"),
           ("sibling_edit/spearman", "edit ρ"), ("calibration/coverage", "80 % coverage"),
           ("calibration/spearman", "ρ(σ, |err|)"))
PRIOR_METRICS = (("prior/selection/gain", "selection gain"), ("prior/sibling/spearman", "sibling ρ"),
                 ("prior/sibling_edit/spearman", "edit ρ"))


def _tasks(data_yaml: Path) -> list[str]:
    return yaml.safe_load(data_yaml.read_text())["init_args"]["tasks"]


def _model(data_yaml: Path) -> str:
    """The frozen LLM a data config's collections come from (``model``; the DataModule's default ``smollm2``)."""
    return str(yaml.safe_load(data_yaml.read_text())["init_args"].get("model", "smollm2"))


def _samples(data_yaml: Path) -> list[int]:
    """The collection seeds a data config serves together (``samples``; default its ``seed``)."""
    init = yaml.safe_load(data_yaml.read_text())["init_args"]
    return list(init.get("samples") or [init.get("seed", 0)])


def _cli(args: list[str]) -> dict[str, float]:
    from tap.cli import main

    sys.argv = ["train.py"]
    cli = main(args)
    return {k: float(v) for k, v in cli.trainer.callback_metrics.items()}


def per_task(metrics: dict[str, float], tasks: list[str]) -> dict[str, dict[str, float]]:
    """``test/<metric>[/<task slug>]`` -> {slug: {metric: value}}; a run on one task reports it unsuffixed."""
    slugs = [task_slug(t) for t in tasks]
    out: dict[str, dict[str, float]] = {s: {} for s in slugs}
    for key, value in metrics.items():
        if not key.startswith("test/"):
            continue
        parts = key[len("test/"):].split("/")
        if parts[-1] in out:
            out[parts[-1]]["/".join(parts[:-1])] = value
        elif len(slugs) == 1:
            out[slugs[0]].setdefault("/".join(parts), value)
    return out


def run(model: str, seed: int, heldout: list[str], train_tasks: list[str], test_data: Path, name: str,
        epochs: int | None, extra: list[str], val_tasks: list[str] | None = None, test_only: bool = False,
        pool_data: Path = POOL, fit_only: bool = False, test_samples: list[int] | None = None) -> dict:
    """Fit on ``train_tasks`` of the pool, test on ``heldout`` (all their trajectories). ``val_tasks`` (some of
    ``train_tasks``) are held out of training whole, as the validation data that selects the epoch and
    calibrates the intervals. ``test_only``: no fit, test the checkpoint already there (e.g. after a metric
    changed); the record then has no fit metrics of its own. ``pool_data``: the data config trained from.
    ``fit_only``: no test (e.g. while the test data is still being collected); the record's ``test`` is empty
    until a ``test_only`` run fills it. ``test_samples``: test on these collection samples of ``test_data`` only
    (default: every sample it serves).
    """
    from tap.systems.checkpoints import find_checkpoint

    ckpt_dir = ROOT / "checkpoints" / "meta" / name
    common = ["--config", str(ROOT / "configs" / "world_model.yaml"), f"--model.init_args.world_model={model}",
              f"--seed_everything={seed}", "--trainer.enable_progress_bar=false"]
    if not any(a.startswith("--checkpoint.monitor") for a in extra):  # keep the epoch that ranks siblings best
        common += ["--checkpoint.monitor=val/sibling/spearman", "--checkpoint.mode=max"]
    common += extra
    start = time.time()
    fit = ["fit", *common, "--data", str(pool_data), f"--data.init_args.tasks=[{', '.join(train_tasks)}]",
           f"--checkpoint.dirpath={ckpt_dir}", f"--trainer.logger.init_args.name=meta-{name}"]
    if epochs:
        fit.append(f"--trainer.max_epochs={epochs}")
    if val_tasks:
        fit.append(f"--data.init_args.val_tasks=[{', '.join(val_tasks)}]")
    if test_only and not ckpt_dir.exists():
        raise SystemExit(f"--test-only: no checkpoint {ckpt_dir.relative_to(ROOT)}; run the same command without "
                         "--test-only to fit it first.")
    fit_metrics = {} if test_only else _cli(fit)
    fit_seconds = time.time() - start
    ckpt = str(find_checkpoint(ckpt_dir))
    samples = list(test_samples) if test_samples else _samples(test_data)
    test = {} if fit_only else _cli(
        ["test", *common, "--data", str(test_data), f"--data.init_args.tasks=[{', '.join(heldout)}]",
         "--data.init_args.split_fractions=[0.0, 1.0]", f"--ckpt_path={ckpt}",
         *([f"--data.init_args.samples=[{', '.join(map(str, samples))}]"] if test_samples else [])])
    trained = [t for t in train_tasks if t not in (val_tasks or [])]
    return {"model": model, "seed": seed, "name": name, "heldout": heldout, "trained_on": trained,
            "val_tasks": val_tasks or [], "pool_config": pool_data.name,
            "test_config": test_data.name, "llm": _model(test_data), "overrides": extra, "checkpoint": ckpt,
            "fit_seconds": None if test_only else round(fit_seconds, 1),
            "selection_ties": "split", "test_samples": [] if fit_only else samples, "machine": machine_info(),
            **({"fit_only": True} if fit_only else {}),
            "val": {k: v for k, v in fit_metrics.items() if k.startswith("val/")
                    and k.count("/") <= 2 + k.startswith("val/prior/")},
            "test": per_task(test, heldout)}


def noise_ceiling(n: int = 32) -> dict[str, float]:
    """Split-half Spearman of one edit's accuracy change at ``n`` examples, per task slug (measured ones)."""
    if not NOISE.exists():
        return {}
    rows = json.loads(NOISE.read_text())
    return {task_slug(r["task"]): r["by_n"][str(n)]["delta"] for r in rows.values() if str(n) in r["by_n"]}


def prior_runs(results: list[dict]) -> list[tuple[str, list[dict]]]:
    """The non-learned prior's rows: it depends only on the tasks trained on, so one row per distinct training
    set, read off the runs of the first label trained on it (the first whose runs were all tested under the
    current tie rule, when there is one); named by its task count when there are several.
    """
    pools = list(dict.fromkeys(tuple(r.get("trained_on", ())) for r in results))
    out = []
    for pool in pools:
        on_pool = [r for r in results if tuple(r.get("trained_on", ())) == pool]
        labels = list(dict.fromkeys(r["label"] for r in on_pool))
        current = [lab for lab in labels if not _dagger([r for r in on_pool if r["label"] == lab])]
        first = (current or labels)[0]
        runs = [r for r in on_pool if r["label"] == first]
        tasks = f"{len(pool)} task" + ("s" if len(pool) != 1 else "")
        name = "prior (op mean Δ)" if len(pools) == 1 else f"prior (op mean Δ, {tasks})"
        out.append((name, runs))
    return out


def _dagger(results: list[dict]) -> str:
    """' †' when a run was tested under the old rules (see ``OLD_RULES``)."""
    return " †" if any(r.get("selection_ties") != "split" for r in results) else ""


OLD_RULES = ("† Tested before 2026-12-04: a selection pick tied between siblings went to the first sibling listed "
             "(now a tie counts as the tied siblings' mean, for the model, the prior and the oracle alike), and "
             "rhymes was an earlier collection. Test these checkpoints again with --test-only.")


def report(results: list[dict]) -> str:
    results = [r for r in results if not r.get("fit_only")]  # fitted with --fit-only, not tested yet
    # noise_ceiling.json was measured on SmolLM2: another frozen LLM's runs are read without it
    smollm2 = all(model_slug(r.get("llm", "smollm2")) == model_slug("smollm2") for r in results)
    ceiling = noise_ceiling() if smollm2 else {}
    labels = list(dict.fromkeys(r["label"] for r in results))
    tasks = list(dict.fromkeys(t for r in results for t in r["test"]))
    seeds = sorted({r["seed"] for r in results})
    head = ["task", "held out by", "model", "seeds", *[c for _, c in METRICS], "noise ceiling (edit ρ)",
            "gain - prior (paired)"]
    trained = sorted({len(r["trained_on"]) for r in results if r["kind"] == "transfer" and "trained_on" in r})
    samples = sorted({tuple(r.get("test_samples", [0])) for r in results if r["kind"] == "transfer"})
    lines = [f"Seeds: {seeds}. Cells: mean ± 95 % Student-t half-width over seeds. Transfer runs trained on "
             f"{'/'.join(map(str, trained)) or '-'} pool tasks, tested on collection sample(s) "
             f"{' / '.join(', '.join(map(str, s)) for s in samples) or '-'} of the transfer set.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for task in tasks:
        for label in labels:
            for held in ("transfer", "loo"):
                rs = [r for r in results if r["label"] == label and task in r["test"] and r["kind"] == held]
                if not rs:
                    continue
                cells = [fmt([r["test"][task].get(k, float("nan")) for r in rs], 2) for k, _ in METRICS]
                diff = fmt([r["test"][task].get("selection/gain", float("nan"))
                            - r["test"][task].get("prior/selection/gain", float("nan")) for r in rs], 2)
                lines.append(f"| {task} | {held} | {label}{_dagger(rs)} | {len(rs)} | " + " | ".join(cells) +
                             (f" | {ceiling[task]:.2f} | {diff} |" if task in ceiling else f" | - | {diff} |"))
        for held in ("transfer", "loo"):
            for name, prior in prior_runs([r for r in results if task in r["test"] and r["kind"] == held]):
                cells = [fmt([r["test"][task].get(k, float("nan")) for r in prior], 2) for k, _ in PRIOR_METRICS]
                lines.append(f"| {task} | {held} | {name}{_dagger(prior)} | {len(prior)} | " + " | ".join(cells) +
                             " | - | - | - | - |")
    lines += ["", "Mean over the transfer tasks (per seed, then over seeds):", "",
              "| model | seeds | selection gain | sibling ρ | edit ρ | edit ρ / ceiling | 80 % coverage | "
              "gain - prior (paired) |", "|---|---|---|---|---|---|---|---|"]
    def mean_over(r: dict, key: str) -> float:
        vals = [v[key] for v in r["test"].values() if key in v]
        return statistics.mean(vals) if vals else float("nan")

    def ceiling_share(r: dict, key: str) -> float:
        shares = [v[key] / ceiling[t] for t, v in r["test"].items() if t in ceiling and key in v]
        return statistics.mean(shares) if shares else float("nan")

    for label in labels:
        rs = [r for r in results if r["label"] == label and r["kind"] == "transfer"]
        if not rs:
            continue
        lines.append(f"| {label}{_dagger(rs)} | {len(rs)} | {fmt([mean_over(r, 'selection/gain') for r in rs], 2)} | "
                     f"{fmt([mean_over(r, 'sibling/spearman') for r in rs], 2)} | "
                     f"{fmt([mean_over(r, 'sibling_edit/spearman') for r in rs], 2)} | "
                     f"{fmt([ceiling_share(r, 'sibling_edit/spearman') for r in rs], 2)} | "
                     f"{fmt([mean_over(r, 'calibration/coverage') for r in rs], 2)} | "
                     f"{fmt([mean_over(r, 'selection/gain') - mean_over(r, 'prior/selection/gain') for r in rs], 2)} |")
    for name, prior in prior_runs([r for r in results if r["kind"] == "transfer"]):
        lines.append(f"| {name}{_dagger(prior)} | {len(prior)} | "
                     f"{fmt([mean_over(r, 'prior/selection/gain') for r in prior], 2)} | "
                     f"{fmt([mean_over(r, 'prior/sibling/spearman') for r in prior], 2)} | "
                     f"{fmt([mean_over(r, 'prior/sibling_edit/spearman') for r in prior], 2)} | "
                     f"{fmt([ceiling_share(r, 'prior/sibling_edit/spearman') for r in prior], 2)} | - | - |")
    if _dagger(results):
        lines += ["", OLD_RULES]
    return "\n".join(lines)


def save_result(out: Path, result: dict) -> list[dict]:
    """Add one run to the results file (replacing a run of the same name), atomically, after re-reading it:
    several processes (e.g. one per seed) may share the file. Returns every result.
    """
    import fcntl

    from tap.paths import write_atomic

    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        results = json.loads(out.read_text()) if out.exists() else []
        results = [r for r in results if r["name"] != result["name"]] + [result]
        write_atomic(out, json.dumps(results, indent=1) + "\n")
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=["hierarchical", "flat", "demo"])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--loo", nargs="*", default=None, help="leave these pool tasks out, one at a time "
                        "(no task named: every pool task); without --loo: test on the transfer set")
    parser.add_argument("--pool-config", type=Path, default=POOL, help="the training pool's data config "
                        "(default configs/data/ii_pool.yaml; e.g. configs/data/ii_pool_wide.yaml)")
    parser.add_argument("--transfer-config", type=Path, default=TRANSFER, help="the transfer set's data config "
                        "(default configs/data/ii_transfer.yaml; e.g. configs/data/ii_transfer_qwen.yaml)")
    parser.add_argument("--pool", nargs="*", default=None, help="train on these tasks of --pool-config only "
                        "(default: all of them), e.g. the ones collected so far")
    parser.add_argument("--val-tasks", nargs="*", default=None, help="pool tasks held out of training whole as "
                        "validation data (epoch selection and interval calibration then measure transfer)")
    parser.add_argument("--epochs", type=int, default=None, help="override trainer.max_epochs")
    parser.add_argument("--tag", default="", help="name for a variant run with extra overrides (kept apart)")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--test-only", action="store_true", help="no fit: test the checkpoints already under "
                        "checkpoints/meta/ again (e.g. after a metric changed), keeping each run's fit record")
    parser.add_argument("--fit-only", action="store_true", help="fit, do not test (test later with --test-only, "
                        "e.g. once the transfer set is collected)")
    parser.add_argument("--test-samples", type=int, nargs="+", default=None, help="test on these collection samples "
                        "of the transfer config only (default: every sample it serves)")
    parser.add_argument("extra", nargs="*", help="more CLI overrides for train.py, after --")
    args = parser.parse_args(argv)
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else []
    pool_data = args.pool_config.resolve()
    if not pool_data.exists():
        parser.error(f"--pool-config {args.pool_config}: no such file; give a data config under configs/data/")
    transfer = args.transfer_config.resolve()
    if not transfer.exists():
        parser.error(f"--transfer-config {args.transfer_config}: no such file; give a data config under configs/data/")
    models = {_model(pool_data), _model(transfer)}  # two aliases of one model are that model
    if len({model_slug(m) for m in models}) > 1 and not args.report_only and args.loo is None:  # --loo: no transfer
        parser.error(f"--pool-config {pool_data.name} and --transfer-config {transfer.name} were collected from "
                     f"different frozen LLMs ({', '.join(sorted(models))}): train and test on one LLM's data")
    pool = _tasks(pool_data)
    if args.pool:
        unknown = [t for t in args.pool if t not in pool]
        if unknown:
            parser.error(f"--pool tasks must be tasks of {pool_data.name}; not in it: {unknown}")
        pool = list(args.pool)
    if args.fit_only and args.test_only:
        parser.error("--fit-only and --test-only exclude each other: fit first, then test")
    if args.test_samples and args.loo is not None:
        parser.error("--test-samples picks samples of the transfer set; --loo tests on the pool")
    stray_samples = sorted(set(args.test_samples or []) - set(_samples(transfer)))
    if stray_samples:
        parser.error(f"--test-samples {stray_samples}: {transfer.name} serves samples {_samples(transfer)} only")
    stray = [t for t in args.val_tasks or [] if t not in pool]
    if stray:
        parser.error(f"--val-tasks must be tasks of the pool trained on; not in it: {stray}")
    if not args.report_only:
        if args.loo is None:
            jobs = [("transfer", _tasks(transfer), pool, transfer)]
        else:
            unknown = [t for t in args.loo if t not in pool]
            if unknown:
                parser.error(f"--loo tasks must be pool tasks ({pool_data.name}); not in it: {unknown}")
            jobs = [("loo", [t], [p for p in pool if p != t], pool_data) for t in (args.loo or pool)]
        for kind, heldout, train_tasks, data in jobs:
            for seed in args.seeds:
                for model in args.models:
                    label = model + (f" ({args.tag})" if args.tag else "")
                    name = f"{model}{'-' + args.tag if args.tag else ''}-{kind}"
                    name += f"-{task_slug(heldout[0])}" if kind == "loo" else ""
                    name += f"-s{seed}"
                    val = [t for t in args.val_tasks or [] if t in train_tasks]
                    r = run(model, seed, heldout, train_tasks, data, name, args.epochs, args.extra, val,
                            args.test_only, pool_data=pool_data, fit_only=args.fit_only,
                            test_samples=args.test_samples if kind == "transfer" else None)
                    if args.test_only:  # keep what the fit recorded; only the test is new
                        old = next((x for x in results if x["name"] == name), {})
                        r = {**r, "fit_seconds": old.get("fit_seconds"), "val": old.get("val", {}),
                             "retested": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
                    results = save_result(out, {**r, "label": label, "tag": args.tag, "kind": kind})
    print(report(results))


if __name__ == "__main__":
    main()
