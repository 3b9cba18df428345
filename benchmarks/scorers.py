"""Which read-out of a meta-trained world model ranks sibling edits best on tasks it never saw?

Per checkpoint ``checkpoints/meta/<tag>-s<seed>``, five scorers of every sibling edit (no LLM call, no training;
the plan, fixed before the runs: ``benchmarks/results/scorers/PLAN.md``):

- ``prior``: the operation's mean accuracy change over the checkpoint's training edits (``WorldModel.op_prior``);
- ``prior-dense``: the operation's mean dense-reward change over the same edits;
- ``model``: the model's predicted accuracy change (with its prior, where it adds one);
- ``model-dense``: the model's predicted dense-reward change;
- ``shrunk``: prior + κ · (model − prior), κ = τ²ₒ / (τ²ₒ + σ²): τ²ₒ the variance of the measured accuracy change
  among the training edits of the edit's operation, σ the model's calibrated std of its accuracy change.

Each is scored on the checkpoint's own validation split (the data its fit chose epochs and the interval scale on;
the training pool rebuilt from the checkpoint's saved data settings) and on the transfer set
(``configs/data/ii_transfer.yaml``): selection gain with ties split evenly (``tap.metrics.SelectionGain``), pooled
over the validation groups and per transfer task, and the within-group sibling Spearman. Per family, the learned
scorer with the best validation gain is the candidate and the better non-learned one the baseline; the report
pairs the candidate against ``prior`` (rule R1) and the baseline (R2) per seed on the transfer set.

    python benchmarks/scorers.py --tags hierarchical-transfer hierarchical-residual-transfer \
        hierarchical-residual-valtask-transfer [--transfer-seeds 0 1 --out benchmarks/results/scorers/both.json]

The transfer set is read as its config serves it (``samples``: three independent collections, 384 groups);
``--transfer-seeds`` picks some of them.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from meta_runs import meta_checkpoints, shown, write_results  # noqa: E402
from prior_variants import _datamodule  # noqa: E402
from stats import fmt, mean_ci, paired_over_groups, seed_families  # noqa: E402

from tap.chains.edits import OP_IDS  # noqa: E402
from tap.collection.datamodule import TriplesDataModule, collate_siblings  # noqa: E402
from tap.errors import TapError  # noqa: E402
from tap.machine import machine_info  # noqa: E402
from tap.metrics import SelectionGain, SiblingRankAgreement  # noqa: E402
from tap.planning.search import load_world_model  # noqa: E402
from tap.systems.world_model import WorldModel, _split_half_deltas  # noqa: E402
from tap.tasks import task_slug  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "scorers" / "scorers.json"
TRANSFER = ROOT / "configs" / "data" / "ii_transfer.yaml"
LEARNED = ("model", "model-dense", "shrunk")
NON_LEARNED = ("prior", "prior-dense")
SCORERS = NON_LEARNED + LEARNED


def op_table(rows: list[dict]) -> dict[str, torch.Tensor]:
    """Per operation id (len(OP_IDS),), over training edits ``rows``: the mean dense change (``dense``) and the
    variance of the accuracy change (``tau2``); 0 for an operation with no edit (the variance: with one).
    """
    n = len(OP_IDS)
    count, dense, acc, acc2 = (torch.zeros(n, dtype=torch.float64) for _ in range(4))
    for r in rows:
        i, d = r["op_id"], r["next_reward"] - r["reward"]
        count[i] += 1
        dense[i] += r["next_dense"] - r["dense"]
        acc[i] += d
        acc2[i] += d * d
    c = count.clamp_min(1.0)
    var = (acc2 - acc * acc / c) / (count - 1).clamp_min(1.0)
    return {"dense": dense / c, "tau2": torch.where(count > 1, var, torch.zeros_like(var))}


def shrink(prior: torch.Tensor, model: torch.Tensor, std: torch.Tensor, tau2: torch.Tensor) -> torch.Tensor:
    """Posterior mean of the change from two Gaussian guesses: the prior (variance ``tau2``) and the model
    (variance ``std``²), all (N,). Where the prior has no spread (τ² = 0) it is kept; a model with no spread is.
    """
    var = std.double().pow(2)
    kappa = torch.where(tau2 + var > 0, tau2 / (tau2 + var).clamp_min(1e-12), torch.zeros_like(var))
    return prior.double() + kappa * (model.double() - prior.double())


@torch.no_grad()
def predictions(wm: WorldModel, groups: list[list[dict]], table: dict[str, torch.Tensor],
                chunk: int = 64) -> dict[str, torch.Tensor]:
    """Every scorer's score per sibling (N,), with the split-half changes, the measured change, group and task ids."""
    keys = (*SCORERS, "half_a", "half_b", "real", "group", "task")
    out: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    names = sorted({g[0]["task"] for g in groups})
    offset = 0
    for i in range(0, len(groups), chunk):
        batch = collate_siblings(groups[i : i + chunk])
        sib = wm.sibling_features(batch)
        mean = sib["residual"] + sib["offset"]  # (N, 2): accuracy, dense
        std = sib["std"][:, 0] * wm.interval_scale
        op = sib["op"].cpu()
        prior = wm.op_prior(sib["op"]).cpu().double()
        a, b = _split_half_deltas(batch)
        cols = {"prior": prior, "prior-dense": table["dense"][op], "model": mean[:, 0].cpu().double(),
                "model-dense": mean[:, 1].cpu().double(),
                "shrunk": shrink(prior, mean[:, 0].cpu(), std.cpu(), table["tau2"][op]),
                "half_a": a.double(), "half_b": b.double(), "real": sib["real"][:, 0].cpu(),
                "group": batch["group"] + offset, "task": torch.tensor([names.index(t) for t in batch["task"]])}
        for key, val in cols.items():
            out[key].append(val)
        offset += int(batch["group"].max()) + 1
    res = {k: torch.cat(v) for k, v in out.items()}
    res["names"] = names  # type: ignore[assignment]
    return res


def read_outs(p: dict[str, torch.Tensor]) -> dict[str, dict]:
    """Per scorer: selection gain pooled over groups (``gain``) and per task slug (``per_task``), the mean of the
    per-task gains (``task_mean``), the sibling Spearman, and each group's gain and the oracle's (for intervals).
    """
    res = {}
    group_task = torch.stack([p["task"][p["group"] == g][0] for g in p["group"].unique()])
    for name in SCORERS:
        model, oracle = SelectionGain.group_gains(p[name], p["half_b"], p["half_a"], p["group"])
        rho = SiblingRankAgreement()
        rho.update(p[name].float(), p["real"].float(), p["group"], p["task"])
        r = {k: float(v) for k, v in rho.compute().items() if k.startswith("spearman")}
        per_task = {task_slug(t): float(model[group_task == i].mean() / oracle[group_task == i].mean())
                    for i, t in enumerate(p["names"])}
        res[name] = {"gain": float(model.mean() / oracle.mean()), "per_task": per_task,
                     "task_mean": statistics.mean(per_task.values()), "rho": r["spearman"],
                     "group_gain": model.tolist(), "oracle_gain": oracle.tolist()}
    return res


@functools.cache
def training_pool(settings: str) -> TriplesDataModule:
    """The training pool a checkpoint was fitted on, from its saved data settings (JSON, so that the seeds of one
    family, which share them, read the pool once).
    """
    dm = TriplesDataModule(**json.loads(settings))
    dm.setup()
    return dm


def choose(runs: list[dict], pool: tuple[str, ...]) -> str:
    """The scorer of ``pool`` with the highest mean pooled validation gain over seeds (first listed on a tie)."""
    return max(pool, key=lambda s: statistics.mean(r["val"][s]["gain"] for r in runs))


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


def _paired(runs: list[dict], a: str, b: str, other: list[dict] | None = None) -> str:
    """``a`` − ``b`` on the transfer set, as text: the per-seed difference of the task-mean gains with its 95 % interval
    over seeds, and the per-group difference (averaged over seeds, over the oracle's mean gain) over groups.
    ``other``: read ``b`` off these runs (another family's, seed for seed) instead of ``runs``.
    """
    base = other if other is not None else runs
    diff = [r["transfer"][a]["task_mean"] - o["transfer"][b]["task_mean"] for r, o in zip(runs, base)]
    m, h = mean_ci(diff)
    oracle = statistics.mean(statistics.mean(r["transfer"][b]["oracle_gain"]) for r in base)
    gm, gh, n_groups = paired_over_groups([r["transfer"][a]["group_gain"] for r in runs],
                                          [r["transfer"][b]["group_gain"] for r in base], oracle)
    seeds_met, groups_met = len(diff) > 1 and m - h > 0, n_groups > 1 and gm - gh > 0
    return (f"{m:+.3f} ± {h:.3f} over seeds ({', '.join(f'{d:+.2f}' for d in diff)}), "
            f"**{_met(seeds_met)}**; {gm:+.3f} ± {gh:.3f} over {n_groups} groups, **{_met(groups_met)}**")


def report(results: dict[str, dict]) -> str:
    """Markdown: per family, each scorer on validation and transfer; the choice; the pre-registered rules."""
    lines = ["Cells: mean ± 95 % Student-t half-width over seeds. Validation: selection gain pooled over the fit's "
             "validation groups. Transfer: selection gain per task, then the mean over tasks; sibling ρ pooled.", "",
             "| family | scorer | seeds | val gain | transfer gain | transfer sibling ρ | per task (transfer gain) |",
             "|---|---|---|---|---|---|---|"]
    rules = []
    for fam, runs in seed_families(results).items():
        for sc in SCORERS:
            tasks = sorted(runs[0]["transfer"][sc]["per_task"])
            per_task = ", ".join(f"{t} {statistics.mean(r['transfer'][sc]['per_task'][t] for r in runs):.2f}"
                                 for t in tasks)
            lines.append(f"| {fam} | {sc} | {len(runs)} | {fmt([r['val'][sc]['gain'] for r in runs], 2)} | "
                         f"{fmt([r['transfer'][sc]['task_mean'] for r in runs], 2)} | "
                         f"{fmt([r['transfer'][sc]['rho'] for r in runs], 2)} | {per_task} |")
        cand, base = choose(runs, LEARNED), choose(runs, NON_LEARNED)
        verdicts = []
        for rule, against in (("R1", "prior"), ("R2", base)):
            if rule == "R2" and against == "prior":
                verdicts.append("R2: the baseline is `prior` (R1 decides)")
                continue
            verdicts.append(f"{rule} (`{cand}` − `{against}`): {_paired(runs, cand, against)}")
        rules.append(f"- **{fam}**: candidate `{cand}`, baseline `{base}` (chosen on validation). "
                     + "; ".join(verdicts) + f". The default read-out, whatever validation chose: "
                     f"`model` − `prior`: {_paired(runs, 'model', 'prior')}.")
    return "\n".join(lines + ["", "Chosen on validation, judged on the transfer set (a rule is met when its 95 % "
                                "interval is above zero; the plan's R1 and R2 read the interval over seeds, its "
                                "addendum also the one over groups):", "", *rules, *between(results)]) + "\n"


def between(results: dict[str, dict]) -> list[str]:
    """Report lines pairing each family's ``model`` read-out with the first family's (the first ``--tags``), seed for
    seed on the seeds both have and group for group; none with one family.
    """
    names = {}
    for run in results:  # in the order the tags were given
        fam, seed = run.rsplit("-s", 1)
        names.setdefault(fam, []).append(seed)
    if len(names) < 2:
        return []
    ref, *rest = names
    out = ["", f"Between families, `model` read-out, each against `{ref}` (paired by seed and by group):", ""]
    for fam in rest:
        seeds = [s for s in names[fam] if s in names[ref]]
        if not seeds:
            out.append(f"- **{fam}** − **{ref}**: no seed in common")
            continue
        runs = [results[f"{fam}-s{s}"] for s in seeds]
        other = [results[f"{ref}-s{s}"] for s in seeds]
        out.append(f"- **{fam}** − **{ref}** (seeds {', '.join(seeds)}): {_paired(runs, 'model', 'model', other)}")
    return out


def command(args: argparse.Namespace) -> str:
    """The command line that makes these results again: the checkpoints, the transfer set when it is not the
    default, the collection seeds read and the output.
    """
    cmd = f"python benchmarks/scorers.py --tags {' '.join(args.tags)}"
    cmd += f" --transfer {shown(args.transfer)}" if args.transfer.resolve() != TRANSFER.resolve() else ""
    return cmd + f" --transfer-seeds {' '.join(map(str, args.transfer_seeds))} --out {shown(args.out)}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tags", nargs="+", help="checkpoint folders checkpoints/meta/<tag>-s<seed> (the first is the "
                    "reference the others are paired with); required unless --report-only")
    ap.add_argument("--transfer", type=Path, default=TRANSFER, help="the transfer set's data config")
    ap.add_argument("--transfer-seeds", type=int, nargs="+", default=None,
                    help="collection seeds of the transfer set to test on, together (each an independent sample: "
                         "`python -m tap.collect --config <transfer> --seed S`; default: the config's samples)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--report-only", action="store_true", help="print the report of the results in --out again")
    args = ap.parse_args(argv)
    if args.report_only:
        print(report(json.loads(args.out.read_text())["runs"]))
        return
    if not args.tags:
        ap.error("--tags is required (checkpoint folders checkpoints/meta/<tag>-s<seed>) unless --report-only")
    torch.set_num_threads(1)
    try:
        test_dm = _datamodule(args.transfer, **({"samples": args.transfer_seeds} if args.transfer_seeds else {}))
    except TapError as err:
        raise SystemExit(str(err)) from err
    transfer, args.transfer_seeds = test_dm.groups["test"].items, test_dm.samples  # the seeds read, for the record
    if not transfer:
        raise SystemExit(f"{args.transfer} has no sibling groups in its test split; collect them with "
                         f"`python -m tap.collect --config {args.transfer}`.")
    results = {}
    for tag in args.tags:
        for ckpt in meta_checkpoints(tag, "benchmarks/results/scorers/PLAN.md"):
            wm, data = load_world_model(ckpt)
            if not data:
                raise SystemExit(f"{ckpt} records no data settings (datamodule_hyper_parameters): refit it with "
                                 "train.py.")
            dm = training_pool(json.dumps(data, sort_keys=True))
            table = op_table(dm.edit_rows["train"])
            results[ckpt.name] = {"val": read_outs(predictions(wm, dm.groups["val"].items, table)),
                                  "transfer": read_outs(predictions(wm, transfer, table))}
    text = report(results)
    write_results(args.out, {"machine": machine_info(), "transfer_seeds": args.transfer_seeds, "runs": results},
                  command(args), text)
    print(text)


if __name__ == "__main__":
    main()
