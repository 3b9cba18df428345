"""Does what a new task's own verified edits showed order the sibling edits of its other chains?

A meta-trained ranker orders a new task's same-operation siblings at chance (``within_op.py``: the learned model
0.507-0.527, the same edit's record on the training tasks 0.509), while a real half-evaluation of the siblings
themselves orders them at 0.695. This asks whether the order can be learnt *inside* the search, from the task's
own earlier verifications of other chains, and whether the world model's learned features carry it further than
the edit's identity does. No LLM call, no training.

Per transfer sibling group ``g`` (``configs/data/ii_transfer.yaml``; a cell is one task's collection sample:
32 groups of 6 siblings, every chain measured on the same 32 examples), the search is taken to have verified
``k`` other groups of the same cell (drawn once per ``(k, g)``, the same for every scorer and checkpoint) on the
first half of the examples. Each scorer is the checkpoint's operation prior plus the posterior mean of a Gaussian
process fitted to the observed residuals (measured first-half change − prior):

    residual(x) = u[op(x)] + v(x) + noise,   u[op] ~ N(0, tau_op^2),   v ~ GP(0, tau_v^2 * [same op] * k(x, x'))

with each observation's noise the variance of its mean paired per-example difference (floored at ``1 / n``, as
``tap.planning.adapt`` does). Scorers, differing only in ``k(x, x')``:

- ``prior``: nothing observed (the meta-trained operation prior);
- ``prior+op``: ``k = 0``, a per-operation correction only (``tap.planning.adapt``'s kind): it moves whole
  operations and leaves their siblings tied;
- ``prior+op+payload``: ``k = 1`` for the same edit (operation and payload), else 0: the edit's own record on
  this task, nothing learned;
- ``prior+op+wm``: ``k`` an RBF kernel on the world model's predicted change features (``f_child − f_parent``,
  unit-normalised), its length the median distance between the cell's same-operation siblings (no outcome
  used): what the meta-trained model's representation says is alike;
- ``prior+oracle`` (bound): the prior's ties broken by the group's own first half, as a second real evaluation.

Judged on the second half of the examples only (the observations and the oracle both read the first half):
selection gain (ties split evenly; the oracle picks on the first half) and within-operation concordance
(same-operation pairs with a different second-half change). Means with 95 % intervals over seeds; each pair's
concordance averaged over seeds, the interval over pairs; paired differences per group averaged over seeds, the
interval over groups. The plan: ``benchmarks/results/within_op/PLAN.md`` addendum 3.

    python benchmarks/online_rank.py --tags hierarchical-transfer --samples 0 1 2 3 4 --k 2 8 31
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from meta_runs import meta_checkpoints, shown, write_results  # noqa: E402
from prior_variants import _datamodule  # noqa: E402
from stats import fmt, mean_ci, paired_over_groups, seed_families  # noqa: E402
from within_op import lexicographic, predictions, within_op_pairs  # noqa: E402

from tap.machine import machine_info  # noqa: E402
from tap.metrics import SelectionGain  # noqa: E402
from tap.planning.search import load_world_model  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "within_op" / "online.json"
KERNELS = ("op", "payload", "wm")
#: RBF kernels: the features (N, F) of ``p`` each reads (``llm``: the frozen LLM's reading, ``llm_rank.py``)
FEATURES = {"wm": "feat", "llm": "llm"}
#: (a, b): a − b selection gain per group, in the report
PAIRS = (("prior+op", "prior"), ("prior+op+payload", "prior+op"), ("prior+op+wm", "prior+op"),
         ("prior+op+wm", "prior+op+payload"))


def draws(p: dict, k: int) -> dict[int, list[int]]:
    """Per group: ``k`` other groups of its cell, drawn by ``random.Random(f"{k}-{group}")`` (all of them when
    the cell has no more), so every scorer and checkpoint observes the same groups.
    """
    group_cell: dict[int, tuple[str, int]] = {}
    for gid, cell in zip(p["group"].tolist(), p["cell"]):
        group_cell.setdefault(gid, cell)
    by_cell: dict[tuple[str, int], list[int]] = {}
    for gid, cell in group_cell.items():
        by_cell.setdefault(cell, []).append(gid)
    out = {}
    for gid, cell in group_cell.items():
        others = [h for h in by_cell[cell] if h != gid]
        out[gid] = sorted(random.Random(f"{k}-{gid}").sample(others, k)) if k < len(others) else others
    return out


def scorer_name(kind: str) -> str:
    """The scorer a kernel gives: ``prior+op`` for none inside an operation, else ``prior+op+<kind>``."""
    return "prior+op" if kind == "op" else f"prior+op+{kind}"


def rbf_lengths(p: dict, key: str = "feat") -> dict[tuple[str, int], float]:
    """Per cell: the median distance between its same-operation siblings' unit-normalised features ``p[key]``
    (the RBF length; no outcome is read). 1.0 where a cell has no such pair at a positive distance.
    """
    unit = torch.nn.functional.normalize(p[key], dim=-1)
    out = {}
    for cell in dict.fromkeys(p["cell"]):
        sel = torch.tensor([c == cell for c in p["cell"]])
        x, op = unit[sel], p["op"][sel]
        d = torch.cdist(x, x)
        same = (op.unsqueeze(0) == op.unsqueeze(1)) & torch.ones_like(d, dtype=torch.bool).triu(1) & (d > 0)
        out[cell] = float(d[same].median()) if same.any() else 1.0
    return out


def kernel(p: dict, rows: torch.Tensor, cols: torch.Tensor, kind: str, length: float) -> torch.Tensor:
    """(len(rows), len(cols)) the within-operation kernel ``k(x, x')`` (module docstring), before the op mask."""
    if kind == "op":
        return torch.zeros(len(rows), len(cols), dtype=torch.float64)
    if kind == "payload":
        kr, kc = [p["key"][i] for i in rows.tolist()], [p["key"][j] for j in cols.tolist()]
        return torch.tensor([[float(a == b) for b in kc] for a in kr], dtype=torch.float64)
    if kind in FEATURES:
        x = torch.nn.functional.normalize(p[FEATURES[kind]], dim=-1)
        return torch.exp(-torch.cdist(x[rows], x[cols]) ** 2 / (2 * length**2))
    raise ValueError(f"unknown kernel {kind!r}; one of {('op', 'payload', *FEATURES)}")


def posterior_residual(p: dict, test: torch.Tensor, obs: torch.Tensor, kind: str, length: float,
                       tau_op: float, tau_v: float) -> torch.Tensor:
    """(len(test),) the GP's posterior mean residual at ``test`` given the first-half residuals at ``obs``."""
    if not len(obs):
        return torch.zeros(len(test), dtype=torch.float64)
    op = p["op"]

    def cov(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        same = (op[rows].unsqueeze(1) == op[cols].unsqueeze(0)).double()
        return same * (tau_op**2 + tau_v**2 * kernel(p, rows, cols, kind, length))

    resid = p["half_a"][obs] - p["prior"][obs]  # (M,)
    K = cov(obs, obs) + torch.diag(p["noise_a"][obs])  # (M, M)
    return cov(test, obs) @ torch.linalg.solve(K, resid)


def online_scores(p: dict, k: int, kind: str, tau_op: float = 0.1, tau_v: float = 0.1) -> torch.Tensor:
    """(N,) prior + posterior residual, each group given ``k`` other groups of its cell (``draws``)."""
    lengths = rbf_lengths(p, FEATURES[kind]) if kind in FEATURES else {}
    score = p["prior"].clone()
    group_cell = dict(zip(p["group"].tolist(), p["cell"]))
    for gid, others in draws(p, k).items():
        test = (p["group"] == gid).nonzero().squeeze(1)
        obs = torch.isin(p["group"], torch.tensor(others, dtype=p["group"].dtype)).nonzero().squeeze(1)
        resid = posterior_residual(p, test, obs, kind, lengths.get(group_cell[gid], 1.0), tau_op, tau_v)
        score[test] += resid.round(decimals=12)  # siblings the kernel cannot tell apart tie exactly, not by rounding
    return score


def read_outs(p: dict, ks: list[int], tau_op: float, tau_v: float, kernels: tuple[str, ...] = KERNELS,
              fixed: dict[str, torch.Tensor] | None = None) -> dict:
    """Per k, per scorer: the selection gain, per-group gains and within-operation pairs (second half). Scorers:
    the prior, one per kernel (``scorer_name``), the ``fixed`` ones (scores that observe nothing, the same at every
    k), and the oracle bound.
    """
    p = {**p, "half_a": p["half_a"].double(), "half_b": p["half_b"].double()}  # the GP and its judge in float64
    res: dict = {}
    for k in ks:
        scores = {"prior": p["prior"]}
        for kind in kernels:
            scores[scorer_name(kind)] = online_scores(p, k, kind, tau_op, tau_v)
        scores |= fixed or {}
        scores["prior+oracle"] = lexicographic(p["prior"], p["half_a"])
        res[str(k)] = {}
        for name in scores:
            model, oracle = SelectionGain.group_gains(scores[name], p["half_b"], p["half_a"], p["group"])
            res[str(k)][name] = {"gain": float(model.mean() / oracle.mean()), "group_gain": model.tolist(),
                                 "oracle_gain": oracle.tolist(),
                                 "within_op": within_op_pairs(scores[name], p, judge="half_b").tolist()}
    return res


def report(results: dict[str, dict], ks: list[int], pairs: tuple[tuple[str, str], ...] = PAIRS) -> str:
    """Markdown: per k and family, each scorer's read-outs (those the runs hold, in their order) and the paired
    differences of ``pairs``.
    """
    lines = ["Judged on the second half of each group's examples. Cells: selection gain, mean ± 95 % interval over "
             "seeds (ties split evenly); within-op: concordance over same-operation pairs with a different "
             "second-half change (0.5 = chance), each pair averaged over seeds, the interval over pairs.", ""]
    for k in ks:
        lines += [f"### k = {k} observed groups of the same task and sample", "",
                  "| family | scorer | seeds | selection gain | within-op concordance (pairs) |",
                  "|---|---|---|---|---|"]
        paired = []
        for fam, runs in seed_families(results).items():
            runs_k = [r[str(k)] for r in runs]
            for sc in runs_k[0]:
                conc = [statistics.mean(c) for c in zip(*(r[sc]["within_op"] for r in runs_k))]
                m, h = mean_ci(conc)
                lines.append(f"| {fam} | {sc} | {len(runs_k)} | {fmt([r[sc]['gain'] for r in runs_k], 3)} | "
                             f"{m:.3f} ± {h:.3f} ({len(conc)}) |")
            oracle = statistics.mean(statistics.mean(r["prior"]["oracle_gain"]) for r in runs_k)
            for a, b in pairs:
                gm, gh, n = paired_over_groups([r[a]["group_gain"] for r in runs_k],
                                               [r[b]["group_gain"] for r in runs_k], oracle)
                paired.append(f"- **{fam}**: {a} − {b} selection gain "
                              f"{fmt([r[a]['gain'] - r[b]['gain'] for r in runs_k], 3)} over seeds, "
                              f"{gm:+.3f} ± {gh:.3f} over {n} groups.")
        lines += ["", "Paired:", "", *paired, ""]
    return "\n".join(lines)


def command(args: argparse.Namespace) -> str:
    """The command line that makes these results again: every option not at its default."""
    cmd = f"python benchmarks/online_rank.py --tags {' '.join(args.tags)}"
    cmd += f" --samples {' '.join(map(str, args.samples))}" if args.samples else ""
    cmd += f" --k {' '.join(map(str, args.k))}"
    cmd += f" --tau-op {args.tau_op}" if args.tau_op != 0.1 else ""
    cmd += f" --tau-v {args.tau_v}" if args.tau_v != 0.1 else ""
    return cmd + (f" --out {shown(args.out)}" if args.out.resolve() != OUT else "")


def add_draw_args(ap: argparse.ArgumentParser) -> None:
    """The options every online read-out shares: the checkpoints, the transfer samples and the observed groups."""
    ap.add_argument("--tags", nargs="+", required=True, help="checkpoint folders checkpoints/meta/<tag>-s<seed>")
    ap.add_argument("--samples", type=int, nargs="+", default=None,
                    help="collection seeds of the transfer set to read (default: the config's samples)")
    ap.add_argument("--k", type=int, nargs="+", default=[2, 8, 31], help="observed groups per group")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_draw_args(ap)
    ap.add_argument("--tau-op", type=float, default=0.1, help="prior sd of a task's per-operation departure")
    ap.add_argument("--tau-v", type=float, default=0.1, help="prior sd of an edit's departure inside its operation")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if min(args.k) < 0 or args.tau_op <= 0 or args.tau_v <= 0:
        raise SystemExit("--k must be >= 0 and --tau-op / --tau-v > 0")
    torch.set_num_threads(1)
    data = ROOT / "configs" / "data" / "ii_transfer.yaml"
    dm = _datamodule(data, **({"samples": args.samples} if args.samples else {}))
    groups = dm.groups["test"].items
    if not groups:
        raise SystemExit(f"{data} has no sibling groups; collect them with `python -m tap.collect --config {data}`.")
    results = {}
    for tag in args.tags:
        for ckpt in meta_checkpoints(tag, "benchmarks/results/within_op/PLAN.md"):
            wm, _ = load_world_model(ckpt)
            results[ckpt.name] = read_outs(predictions(wm, groups), args.k, args.tau_op, args.tau_v)
            print(f"{ckpt.name}: done", flush=True)
    text = report(results, args.k)
    write_results(args.out, {"machine": machine_info(), "groups": len(groups), "samples": dm.samples,
                             "runs": results}, command(args), text)
    print(text)


if __name__ == "__main__":
    main()
