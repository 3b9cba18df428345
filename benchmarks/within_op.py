"""Does a meta-trained world model order sibling edits *within* an operation on tasks it never saw?

The non-learned prior scores an edit by its operation's mean accuracy change in training, so it ties every
sibling of one operation. This asks whether the learned model's ordering inside those ties carries signal on
the transfer set, and whether a **lexicographic** ranker (sort by the prior, break its ties with the model)
beats the prior. Per checkpoint ``checkpoints/meta/<tag>-s<seed>``, on the transfer set's sibling groups
(``configs/data/ii_transfer.yaml``; no LLM call, no training):

- **selection gain**, ties split evenly: a pick among tied siblings counts as their mean change (the oracle's
  too), judged on the second half of the examples, the oracle picking on the first (``tap.metrics``'s split);
- **sibling Spearman** (``SiblingRankAgreement``);
- **within-operation concordance**: over pairs of one group's siblings with the same operation and a different
  measured accuracy change, the share a scorer orders as measured (a tie counts half; 0.5 is chance); each
  pair averaged over the seeds, the interval over the pairs (the seeds share the pairs, so they are not
  independent draws).

Scorers: ``prior``, ``model``, ``lexicographic``, ``prior+prompt`` (the prior's ties broken by how many characters
the edit adds to the prompt before the question, ``tap.chains.render.prompt_chars``: known before any evaluation,
nothing learned), ``prior+payload`` (the prior's ties broken by the same edit's record: the mean accuracy change of
the training edits with its operation and payload, shrunk toward the operation's mean with one pseudo-count; nothing
learned), ``prior+relevance`` (the prior's ties broken by how much closer the edit brings the prompt's text to the
task's train input/output pairs, all a model sees of a new task: the cosine, in the frozen MiniLM text tower's
space, of the child's prompt to the pairs' mean direction minus the parent's; ``Relevance``; nothing learned) and
``prior+oracle`` (the prior's ties broken by the oracle's half of the examples: what a second
real evaluation would add). Means with 95 % intervals over seeds, the paired difference of each tie-break − prior
per seed, and its interval over groups (per-group difference averaged over seeds). The plan:
``benchmarks/results/within_op/PLAN.md``.

    python benchmarks/within_op.py --tags hierarchical-transfer hierarchical-residual-transfer
    python benchmarks/within_op.py --tags hierarchical-transfer --samples 0 1 2 3 4   # more transfer samples
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from meta_runs import meta_checkpoints, shown, write_results  # noqa: E402
from prior_variants import _datamodule  # noqa: E402
from scorers import training_pool  # noqa: E402
from stats import fmt, mean_ci, paired_over_groups, same_op_concordance, seed_families  # noqa: E402

from tap.chains.chain import Chain  # noqa: E402
from tap.chains.render import prompt_chars  # noqa: E402
from tap.collection.datamodule import collate_siblings  # noqa: E402
from tap.machine import machine_info  # noqa: E402
from tap.metrics import SelectionGain, SiblingRankAgreement  # noqa: E402
from tap.planning.search import load_world_model  # noqa: E402
from tap.systems.world_model import WorldModel, _split_half_deltas, task_closeness  # noqa: E402
from tap.tasks import task_slug  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "within_op" / "within_op.json"
SCORERS = ("prior", "model", "lexicographic", "prior+prompt", "prior+payload", "prior+relevance", "prior+oracle")
#: each paired against the prior in the report
TIE_BREAKS = ("lexicographic", "prior+prompt", "prior+payload", "prior+relevance")


def payload_key(edit_json: str) -> str:
    """What an edit is, across tasks and chains: its operation and payload (a demonstration's payload holds its
    task's example uid, so it never matches another task's).
    """
    edit = json.loads(edit_json)
    return f"{edit['op']}|{json.dumps(edit['payload'], sort_keys=True)}"


def payload_table(rows: list[dict]) -> dict[str, tuple[float, int]]:
    """Per payload key: the sum of the measured accuracy changes of ``rows`` (training edits) and their count."""
    table: dict[str, list] = defaultdict(lambda: [0.0, 0])
    for r in rows:
        entry = table[payload_key(r["edit"])]
        entry[0] += r["next_reward"] - r["reward"]
        entry[1] += 1
    return {k: (v[0], v[1]) for k, v in table.items()}


def payload_scores(keys: list[str], op_mean: torch.Tensor, table: dict[str, tuple[float, int]]) -> torch.Tensor:
    """(N,) each edit's record, ``(sum + op mean) / (n + 1)``: its operation's mean where it never occurred."""
    out = []
    for key, prior in zip(keys, op_mean.tolist()):
        total, n = table.get(key, (0.0, 0))
        out.append((total + prior) / (n + 1))
    return torch.tensor(out, dtype=torch.float64)


class Relevance:
    """Zero-shot and not learned: how much closer an edit brings the prompt to the task it is for.

    Per sibling, ``cos(e(child), t) − cos(e(parent), t)`` (``tap.systems.world_model.task_closeness``, which
    ``WorldModel(relevance=True)`` reads too): ``e`` the frozen MiniLM text tower's embedding of the chain's prompt
    (``tap.chains.render.prompt_text``), ``t`` the unit mean of the embeddings of the task's train input/output
    pairs (the row's ``task_pairs``: all a model sees of a new task). The hypothesis it tests: an
    edit whose text reads more like the task helps more. ``text``: any text backbone (default: frozen MiniLM, which
    memoises each text's embedding).
    """

    def __init__(self, max_tokens: int = 512, text: torch.nn.Module | None = None) -> None:
        if text is None:
            from tap.models.text import MiniLMText

            text = MiniLMText(lora_rank=0, max_tokens=max_tokens)
        self.text = text.eval()

    @torch.no_grad()
    def __call__(self, rows: list[dict]) -> torch.Tensor:
        """(N,) each row's relevance change; ``rows`` are sibling rows (``chain``, ``next_chain``, ``task_pairs``)."""
        if any(not r.get("task_pairs") for r in rows):
            raise SystemExit("a sibling row carries no task pairs; serve the data with task_pairs > 0.")
        chains = [Chain.from_json(r[k]) for k in ("chain", "next_chain") for r in rows]  # parents, then children
        r = task_closeness(lambda t: self.text(t).double(), [r["task_pairs"] for r in rows], chains)
        parent, child = r.view(2, len(rows))
        return child - parent


def half_noise(correct: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N,) the variance of each sibling's first-half accuracy change: the per-example paired differences'
    variance over n, floored at ``1 / n`` (``tap.planning.adapt.paired_residual_noise`` on the first half).

    ``correct`` (N, 2, E) parent's and child's per-example correctness; ``mask`` (N, E) the examples present.
    """
    n = mask.sum(1, keepdim=True)  # (N, 1)
    first = (torch.arange(mask.shape[1]).unsqueeze(0) < n // 2) & mask  # (N, E)
    m = first.sum(1).clamp_min(1).double()  # (N,)
    d = (correct[:, 1] - correct[:, 0]).double() * first  # (N, E)
    mean = d.sum(1) / m
    var = ((d - mean.unsqueeze(1)) ** 2 * first).sum(1) / m
    return torch.maximum(var, 1.0 / m) / m


@torch.no_grad()
def predictions(wm: WorldModel, groups: list[list[dict]], chunk: int = 64,
                payloads: dict[str, tuple[float, int]] | None = None,
                relevance: Relevance | None = None) -> dict[str, torch.Tensor]:
    """Per sibling (N,): the model's predicted accuracy change (with its prior when it adds one), the prior,
    the operation id, the prompt change (``prompt_chars`` of the child − the parent's), the edit's record in
    ``payloads`` (``payload_table`` of the training edits; none given: the prior) and whether it has one, the
    ``relevance`` change (``Relevance``; none given: zeros), the
    split-half changes and the first half's noise (``half_noise``), the measured change, group and task ids, the
    world model's predicted change features ``feat`` (N, F: child − parent); and as lists, each edit's payload key
    and its cell (task, collection sample).
    """
    keys = ("model", "prior", "op", "prompt", "payload", "seen", "relevance", "half_a", "half_b", "noise_a", "real",
            "group", "task", "feat")
    out: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    names = sorted({g[0]["task"] for g in groups})
    edit_keys: list[str] = []
    cells: list[tuple[str, int]] = []
    offset = 0
    for i in range(0, len(groups), chunk):
        batch = collate_siblings(groups[i : i + chunk])
        sib = wm.sibling_features(batch)
        a, b = _split_half_deltas(batch)
        task = torch.tensor([names.index(t) for t in batch["task"]])
        prompt = torch.tensor([float(prompt_chars(Chain.from_json(c[1])) - prompt_chars(Chain.from_json(c[0])))
                               for c in batch["chain_json"]])
        prior = wm.op_prior(sib["op"]).cpu().double()
        part = groups[i : i + chunk]
        edits = [payload_key(r["edit"]) for g in part for r in g]  # collate_siblings' order
        edit_keys += edits
        cells += [(r["task"], int(r.get("sample", 0))) for g in part for r in g]
        table = payloads or {}
        seen = torch.tensor([k in table for k in edits])
        rows = [r for g in part for r in g]
        rel = relevance(rows) if relevance is not None else torch.zeros(len(rows), dtype=torch.float64)
        for key, val in (("model", sib["residual"][:, 0] + sib["offset"][:, 0]), ("prior", prior),
                         ("op", sib["op"]), ("prompt", prompt), ("payload", payload_scores(edits, prior, table)),
                         ("seen", seen), ("relevance", rel), ("half_a", a), ("half_b", b),
                         ("noise_a", half_noise(batch["correct"], batch["example_mask"])),
                         ("real", sib["real"][:, 0]), ("group", batch["group"] + offset), ("task", task),
                         ("feat", (sib["child"] - sib["parent"]).double())):
            out[key].append(val.cpu())
        offset += int(batch["group"].max()) + 1
    res = {k: torch.cat(v) for k, v in out.items()}
    res["names"], res["key"], res["cell"] = names, edit_keys, cells  # type: ignore[assignment]
    return res


def lexicographic(primary: torch.Tensor, secondary: torch.Tensor) -> torch.Tensor:
    """(N,) scores that order by ``primary`` and break its exact ties by ``secondary`` (whose own ties stay
    ties): the secondary rescaled to [0, 1), times half the smallest gap between distinct primary values.
    """
    levels = primary.double().unique()
    gap = float((levels[1:] - levels[:-1]).min()) if len(levels) > 1 else 1.0
    s = secondary.double()
    unit = (s - s.min()) / (s.max() - s.min()).clamp_min(1e-12) * (1 - 1e-9)  # in [0, 1)
    return primary.double() + 0.5 * gap * unit


def scores(p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"prior": p["prior"].double(), "model": p["model"].double(),
            "lexicographic": lexicographic(p["prior"], p["model"]),
            "prior+prompt": lexicographic(p["prior"], p["prompt"]),
            "prior+payload": lexicographic(p["prior"], p["payload"]),
            "prior+relevance": lexicographic(p["prior"], p["relevance"]),
            "prior+oracle": lexicographic(p["prior"], p["half_a"])}


def group_gains(score: torch.Tensor, p: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per group (G,): the scorer's and the oracle's gain over the group mean, judged on the second half."""
    model, oracle = SelectionGain.group_gains(score.double(), p["half_b"].double(), p["half_a"].double(), p["group"])
    if len(model) != len(p["group"].unique()):  # the per-task split below indexes every group
        raise SystemExit("every sibling group needs at least two siblings; recollect with siblings >= 2")
    return model, oracle


def within_op_pairs(score: torch.Tensor, p: dict[str, torch.Tensor], judge: str = "real") -> torch.Tensor:
    """Concordance (1, 0.5 for a tied score, 0) of every same-operation sibling pair with different measured
    changes (``p[judge]``: on all examples, or ``half_b`` on the second half), in group order (so pairs line up
    across checkpoints).
    """
    out: list[float] = []
    for gid in p["group"].unique().tolist():
        sel = p["group"] == gid
        out += same_op_concordance(p["op"][sel].tolist(), score[sel].tolist(), p[judge][sel].tolist())
    return torch.tensor(out)


def read_outs(p: dict[str, torch.Tensor]) -> dict:
    """Every scorer's read-outs on one checkpoint's predictions, pooled and per task."""
    res: dict = {}
    for name, s in scores(p).items():
        model, oracle = group_gains(s, p)
        group_task = torch.stack([p["task"][p["group"] == g][0] for g in p["group"].unique()])
        rho = SiblingRankAgreement()
        rho.update(s.float(), p["real"], p["group"], p["task"])
        r = {k: float(v) for k, v in rho.compute().items() if k.startswith("spearman")}
        per_task = {}
        for i, t in enumerate(p["names"]):
            sel = group_task == i
            per_task[task_slug(t)] = {"gain": float(model[sel].mean() / oracle[sel].mean()),
                                      "rho": r.get(f"spearman/{i}", float("nan"))}
        res[name] = {"gain": float(model.mean() / oracle.mean()), "group_gain": model.tolist(),
                     "oracle_gain": oracle.tolist(), "rho": r["spearman"],
                     "within_op": within_op_pairs(s, p).tolist(), "per_task": per_task}
    res["payload_seen"] = float(p["seen"].float().mean())  # the share of siblings with a training record
    return res


def report(results: dict[str, dict]) -> str:
    """Markdown tables: per family, each scorer's mean ± 95 % interval over seeds, and the paired rules."""
    lines = ["Cells: mean ± 95 % Student-t half-width over seeds (selection gain with ties split evenly; "
             "within-op: concordance over same-operation pairs, 0.5 = chance, each pair's concordance averaged over "
             "the seeds, the interval over the pairs).", "",
             "| family | scorer | seeds | selection gain | sibling ρ | within-op concordance (pairs) |",
             "|---|---|---|---|---|---|"]
    paired = []
    for fam, runs in seed_families(results).items():
        for sc in SCORERS:
            pairs = [statistics.mean(c) for c in zip(*(r[sc]["within_op"] for r in runs))]  # pairs line up
            m, h = mean_ci(pairs)
            lines.append(f"| {fam} | {sc} | {len(runs)} | {fmt([r[sc]['gain'] for r in runs], 2)} | "
                         f"{fmt([r[sc]['rho'] for r in runs], 2)} | {m:.3f} ± {h:.3f} ({len(pairs)}) |")
        if all("payload_seen" in r for r in runs):
            paired.append(f"- **{fam}**: the edit's payload occurred in training for "
                          f"{statistics.mean(r['payload_seen'] for r in runs):.1%} of the siblings.")
        oracle = statistics.mean(statistics.mean(r["prior"]["oracle_gain"]) for r in runs)
        tasks = sorted(runs[0]["prior"]["per_task"])
        for tie in TIE_BREAKS:
            diff = [r[tie]["gain"] - r["prior"]["gain"] for r in runs]
            gm, gh, n_groups = paired_over_groups([r[tie]["group_gain"] for r in runs],
                                                  [r["prior"]["group_gain"] for r in runs], oracle)
            per_task = ", ".join(
                f"{t} {fmt([r[tie]['per_task'][t]['gain'] - r['prior']['per_task'][t]['gain'] for r in runs], 2)}"
                for t in tasks)
            paired.append(f"- **{fam}**: {tie} − prior selection gain {fmt(diff, 3)} over seeds, "
                          f"{gm:+.3f} ± {gh:.3f} over {n_groups} groups; per task: {per_task}.")
    return "\n".join(lines + ["", "Paired, each tie-break − prior:", "", *paired]) + "\n"


def command(args: argparse.Namespace, samples: list[int]) -> str:
    """The command line that makes these results again: every option not at its default."""
    cmd = f"python benchmarks/within_op.py --tags {' '.join(args.tags)}"
    default_data = ROOT / "configs" / "data" / "ii_transfer.yaml"
    cmd += f" --data {shown(args.data)}" if args.data.resolve() != default_data else ""
    cmd += f" --tasks {' '.join(args.tasks)}" if args.tasks else ""
    cmd += f" --samples {' '.join(map(str, samples))}" if args.samples else ""
    cmd += f" --split {args.split}" if args.split != "test" else ""
    return cmd + (f" --out {shown(args.out)}" if args.out.resolve() != OUT else "")


def add_group_args(ap: argparse.ArgumentParser) -> None:
    """The options every read-out over checkpoints and sibling groups shares: the checkpoints, the groups' data
    config and which of its collection samples to read.
    """
    ap.add_argument("--tags", nargs="+", required=True, help="checkpoint folders checkpoints/meta/<tag>-s<seed>")
    ap.add_argument("--data", type=Path, default=ROOT / "configs" / "data" / "ii_transfer.yaml",
                    help="the sibling groups' data config (default: the transfer set)")
    ap.add_argument("--samples", type=int, nargs="+", default=None,
                    help="collection seeds of --data to read, together (default: the config's samples)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_group_args(ap)
    ap.add_argument("--tasks", nargs="*", help="only these tasks of --data (default: all of them)")
    ap.add_argument("--split", default="test", choices=("train", "val", "test"))
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    overrides = ({"tasks": args.tasks} if args.tasks else {}) | ({"samples": args.samples} if args.samples else {})
    dm = _datamodule(args.data, **overrides)
    groups = dm.groups[args.split].items
    if not groups:
        raise SystemExit(f"{args.data} has no sibling groups in its {args.split} split; collect them with "
                         f"`python -m tap.collect --config {args.data}` or pick another --split.")
    results = {}
    relevance = Relevance()  # shared by the checkpoints: it depends on the data only
    for tag in args.tags:
        for ckpt in meta_checkpoints(tag, "benchmarks/results/within_op/PLAN.md"):
            wm, data = load_world_model(ckpt)
            if not data:
                raise SystemExit(f"{ckpt} records no data settings (datamodule_hyper_parameters): refit it with "
                                 "train.py.")
            table = payload_table(training_pool(json.dumps(data, sort_keys=True)).edit_rows["train"])
            results[ckpt.name] = read_outs(predictions(wm, groups, payloads=table, relevance=relevance))
    text = report(results)
    write_results(args.out, {"machine": machine_info(), "groups": len(groups), "samples": dm.samples, "runs": results},
                  command(args, dm.samples), text)
    print(text)


if __name__ == "__main__":
    main()
