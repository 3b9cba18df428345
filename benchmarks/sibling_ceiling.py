"""The noise ceiling of sibling ranking, measured on the very sibling groups a world model ranks.

Issue 13's second target reads "sibling-ranking Spearman >= 0.6 of the noise ceiling". ``noise_ceiling.py``
measures a ceiling of the *pooled* edit Spearman on other edits (random chains of each task); a split-half
ceiling belongs to the items ranked, and the within-group sibling Spearman had none. Every transfer sibling is
evaluated on 32 examples in two disjoint halves (``_split_half_deltas``), so here the ceiling is how well a
second real evaluation (the first half's accuracy changes) orders the siblings as the second half measured them,
and every scorer is judged against the second half too (no LLM call, no training):

- ``C_sib``: ``SiblingRankAgreement(half_a, half_b)``, the mean within-group Spearman (a group whose second-half
  changes are all equal is skipped for every scorer alike; a constant score counts 0);
- ``C_edit``: the Spearman of half A with half B over a task's siblings pooled;
- per scorer (each checkpoint's model, and its prior): ``rho_sib(score, half_b)`` and ``rho_edit(score, half_b)``;
  the **share** is ``rho / C`` per task, then the mean over the tasks;
- beside them, the older convention (edit rho against all 32 examples over ``noise_ceiling.json``'s edit-rho
  ceiling at 32) and the in-data ceiling stepped up to 32 examples by Spearman-Brown, ``2C / (1 + C)``, against
  each scorer's rho with all 32 examples.

With ``--extend N`` (one or more samples), every parent and sibling is also evaluated on the next ``N`` search
examples of its collection (``env.order[32:32 + N]``, the collection's environment settings, through the call
cache; resumable, kept under ``results/ceiling/extended/``), after a check that its stored 32 examples reproduce
exactly; the ceiling is then measured at 32 against N new examples instead of estimated, and every scorer judged
on the new ones (``ceiling32.md``).

Intervals: a 95 % percentile bootstrap over groups (each task's groups resampled with replacement) of the family's
share, its per-group rho averaged over seeds; and mean +- 95 % interval over seeds. ``model − prior`` is the
learned model's share minus its prior's on the same groups (per seed; per draw in the bootstrap), the paired reading
of issue 13's fourth target on this metric. The plan:
``benchmarks/results/ceiling/PLAN.md``.

    python benchmarks/sibling_ceiling.py --tags hierarchical-transfer --samples 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import sys
from pathlib import Path

import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from meta_runs import meta_checkpoints, shown, write_results  # noqa: E402
from meta_world_model import noise_ceiling  # noqa: E402
from prior_variants import _datamodule  # noqa: E402
from stats import fmt, seed_families  # noqa: E402
from within_op import add_group_args, predictions  # noqa: E402

from tap.chains import Chain  # noqa: E402
from tap.llm.provision import model_slug  # noqa: E402
from tap.machine import machine_info  # noqa: E402
from tap.metrics import SiblingRankAgreement  # noqa: E402
from tap.planning.search import load_world_model  # noqa: E402
from tap.tasks import task_slug  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "ceiling" / "ceiling.json"
PLAN = "benchmarks/results/ceiling/PLAN.md"
TARGET = 0.6  # issue 13: sibling-ranking Spearman >= 0.6 of the noise ceiling


def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks along the last dimension (..., n), ties given their mean rank (1-based), as Spearman's rho needs."""
    x = x.contiguous()
    ordered = x.sort(-1).values
    below = torch.searchsorted(ordered, x)  # (..., n) how many are smaller
    upto = torch.searchsorted(ordered, x, right=True)  # (..., n) how many are smaller or equal
    return (below + upto + 1).double() / 2


def spearman_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman's rho of each row of ``a`` with the same row of ``b`` (R, n) -> (R,); NaN for a constant row."""
    ra, rb = average_ranks(a), average_ranks(b)
    ra, rb = ra - ra.mean(-1, keepdim=True), rb - rb.mean(-1, keepdim=True)
    den = (ra.pow(2).sum(-1) * rb.pow(2).sum(-1)).sqrt()
    return torch.where(den > 0, (ra * rb).sum(-1) / den.clamp_min(1e-300), torch.nan)


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(spearman_rows(a.double().unsqueeze(0), b.double().unsqueeze(0))[0])


def read_outs(p: dict) -> dict:
    """One checkpoint's per-group sibling rho and per-task edit rho, judged on the second half (model, prior,
    ceiling) and on all examples (model, prior), and the groups' tasks.
    """
    group_task = torch.stack([p["task"][p["group"] == g][0] for g in p["group"].unique()])
    out: dict = {"names": [task_slug(t) for t in p["names"]], "group_task": group_task.tolist()}
    scores = {"model": p["model"], "prior": p["prior"], "ceiling": p["half_a"]}
    for who, s in scores.items():
        out[who] = {"sib_half": SiblingRankAgreement.group_rhos(s, p["half_b"], p["group"]).tolist(),
                    "edit_half": [spearman(s[p["task"] == i], p["half_b"][p["task"] == i])
                                  for i in range(len(p["names"]))]}
        if who != "ceiling":
            out[who] |= {"sib_all": SiblingRankAgreement.group_rhos(s, p["real"], p["group"]).tolist(),
                         "edit_all": [spearman(s[p["task"] == i], p["real"][p["task"] == i])
                                      for i in range(len(p["names"]))]}
    return out


def sibling_share(num: torch.Tensor, den: torch.Tensor, group_task: torch.Tensor, n_tasks: int) -> float:
    """Mean over tasks of mean(num) / mean(den) over the task's groups with an order (den defined)."""
    shares = []
    for t in range(n_tasks):
        sel = (group_task == t) & ~den.isnan()
        if sel.any() and float(den[sel].mean()) > 0:
            shares.append(float(num[sel].mean() / den[sel].mean()))
    return statistics.mean(shares) if shares else float("nan")


def bootstrap(runs: list[dict], p: dict, draws: int, seed: int) -> dict[str, tuple[float, float]]:
    """95 % percentile intervals of the family's shares (model and prior, sibling and edit rho), each task's
    groups resampled with replacement ``draws`` times (per-group rho averaged over the family's seeds).
    """
    g = torch.Generator().manual_seed(seed)
    gt = torch.tensor(runs[0]["group_task"])
    n_tasks = len(runs[0]["names"])
    ceil_g = torch.tensor(runs[0]["ceiling"]["sib_half"], dtype=torch.float64)
    sib = {who: torch.tensor([r[who]["sib_half"] for r in runs], dtype=torch.float64).mean(0)
           for who in ("model", "prior")}
    rows_of = [torch.nonzero(p["group"] == gid).flatten() for gid in p["group"].unique().tolist()]  # group order
    preds = {"model": torch.stack([r["_model"] for r in runs]).double(), "prior": runs[0]["_prior"].double()[None]}
    out: dict[str, list[float]] = {f"{who}/{k}": [] for who in ("model", "prior") for k in ("sib", "edit")}
    for _ in tqdm(range(draws), desc="bootstrap", leave=False):
        idx = torch.cat([torch.nonzero(gt == t).flatten()[torch.randint(int((gt == t).sum()), (int((gt == t).sum()),),
                                                                        generator=g)] for t in range(n_tasks)])
        cg, tg = ceil_g[idx], gt[idx]
        for who in ("model", "prior"):
            out[f"{who}/sib"].append(sibling_share(sib[who][idx], cg, tg, n_tasks))
        edit: dict[str, list[float]] = {"model": [], "prior": []}
        for t in range(n_tasks):
            rows = torch.cat([rows_of[i] for i in idx[tg == t].tolist()])
            c = spearman(p["half_a"][rows], p["half_b"][rows])
            for who in ("model", "prior"):
                rho = spearman_rows(preds[who][:, rows], p["half_b"][rows].double().expand(len(preds[who]), -1))
                if c > 0:
                    edit[who].append(float(rho.nanmean()) / c)
        for who in ("model", "prior"):
            out[f"{who}/edit"].append(statistics.mean(edit[who]) if edit[who] else float("nan"))
    for kind in ("sib", "edit"):  # the learned model's lead over its prior, paired on every draw (PLAN S4)
        out[f"gap/{kind}"] = [m - q for m, q in zip(out[f"model/{kind}"], out[f"prior/{kind}"])]
    ci = {}
    for key, vals in out.items():
        v = torch.tensor([x for x in vals if x == x], dtype=torch.float64)
        ci[key] = (float(v.quantile(0.025)), float(v.quantile(0.975))) if len(v) else (float("nan"),) * 2
    return ci


def _cell(x: float) -> str:
    """A ceiling for the table: two places, or ``-`` where none was measured (another LLM's data)."""
    return "-" if math.isnan(x) else f"{x:.2f}"


def family_summary(runs: list[dict], old_ceiling: dict[str, float]) -> dict:
    """Per seed and per task: the shares of the in-data ceiling (second half), the step-up and the old one."""
    names = runs[0]["names"]
    gt = torch.tensor(runs[0]["group_task"])
    ceil_sib = torch.tensor(runs[0]["ceiling"]["sib_half"], dtype=torch.float64)
    ceil_edit = runs[0]["ceiling"]["edit_half"]
    per_task_c = {n: float(ceil_sib[(gt == i) & ~ceil_sib.isnan()].mean()) for i, n in enumerate(names)}

    def step(c: float) -> float:
        return 2 * c / (1 + c)

    out: dict = {"ceiling": {"sib_half": per_task_c, "edit_half": dict(zip(names, ceil_edit)),
                             "groups": {n: int(((gt == i) & ~ceil_sib.isnan()).sum()) for i, n in enumerate(names)},
                             "old_edit_32": {n: old_ceiling.get(n, float("nan")) for n in names}}}
    for who in ("model", "prior"):
        rows = runs if who == "model" else runs[:1]
        res: dict = {"sib_share": [], "edit_share": [], "sib_step_share": [], "edit_old_share": [], "per_task": {}}
        for r in rows:
            sib = torch.tensor(r[who]["sib_half"], dtype=torch.float64)
            sib_all = torch.tensor(r[who]["sib_all"], dtype=torch.float64)
            res["sib_share"].append(sibling_share(sib, ceil_sib, gt, len(names)))
            edit = [r[who]["edit_half"][i] / c for i, c in enumerate(ceil_edit) if c > 0]
            res["edit_share"].append(statistics.mean(edit) if edit else float("nan"))
            steps = []
            for i, n in enumerate(names):
                sel = (gt == i) & ~sib_all.isnan()
                if sel.any() and per_task_c[n] > 0:
                    steps.append(float(sib_all[sel].mean()) / step(per_task_c[n]))
            res["sib_step_share"].append(statistics.mean(steps) if steps else float("nan"))
            old = [r[who]["edit_all"][i] / old_ceiling[n] for i, n in enumerate(names) if old_ceiling.get(n)]
            res["edit_old_share"].append(statistics.mean(old) if old else float("nan"))
        for i, n in enumerate(names):
            sel = gt == i
            res["per_task"][n] = {
                "sib_half": [float(torch.tensor(r[who]["sib_half"], dtype=torch.float64)[sel].nanmean()) for r in rows],
                "edit_half": [r[who]["edit_half"][i] for r in rows]}
        out[who] = res
    out["gap"] = {k: [m - out["prior"][k][0] for m in out["model"][k]]  # paired: the same groups, per seed
                  for k in ("sib_share", "edit_share", "sib_step_share", "edit_old_share")}
    return out


LABEL = {"gap": "model − prior (paired)"}  # the share's difference on the same groups, per seed and per draw


def report(summary: dict, ci: dict, samples: list[int], groups: int) -> str:
    lines = [f"Transfer set, samples {samples}, {groups} sibling groups. Judged on the second half of each group's "
             "32 examples; the ceiling is the first half's order of the same siblings (a second real evaluation). "
             "Shares: the scorer's rho over the ceiling's per task, mean over tasks; cells mean ± 95 % interval over "
             "seeds, [bootstrap 95 % over groups]; `model − prior` is the paired difference of the two shares.", "",
             "| family | scorer | sibling ρ / in-data ceiling | edit ρ / in-data ceiling | sibling ρ (32 ex.) / "
             "stepped-up ceiling | edit ρ (32 ex.) / old ceiling |", "|---|---|---|---|---|---|"]
    for fam, s in summary.items():
        for who in ("model", "prior", "gap"):
            r, c = s[who], ci[fam]
            sib, edit = c[f"{who}/sib"], c[f"{who}/edit"]
            lines.append(f"| {fam} | {LABEL.get(who, who)} | {fmt(r['sib_share'], 2)} [{sib[0]:.2f}, {sib[1]:.2f}] | "
                         f"{fmt(r['edit_share'], 2)} [{edit[0]:.2f}, {edit[1]:.2f}] | "
                         f"{fmt(r['sib_step_share'], 2)} | {fmt(r['edit_old_share'], 2)} |")
    first = next(iter(summary.values()))
    lines += ["", "The ceilings per task (the same data for every family):", "",
              "| task | groups with an order | sibling ρ ceiling (16 vs 16) | stepped up to 32 | edit ρ ceiling "
              "(16 vs 16) | old edit ρ ceiling (other edits, 32 vs 32) |", "|---|---|---|---|---|---|"]
    for n, c in first["ceiling"]["sib_half"].items():
        lines.append(f"| {n} | {first['ceiling']['groups'][n]} | {c:.3f} | {2 * c / (1 + c):.3f} | "
                     f"{first['ceiling']['edit_half'][n]:.3f} | {_cell(first['ceiling']['old_edit_32'][n])} |")
    lines += ["", "Per task, sibling ρ and edit ρ against the second half (mean ± interval over seeds):", "",
              "| family | scorer | task | sibling ρ | edit ρ |", "|---|---|---|---|---|"]
    for fam, s in summary.items():
        for who in ("model", "prior"):
            for n, v in s[who]["per_task"].items():
                lines.append(f"| {fam} | {who} | {n} | {fmt(v['sib_half'], 3)} | {fmt(v['edit_half'], 3)} |")
    return "\n".join(lines) + "\n"


EXTENDED = ROOT / "benchmarks" / "results" / "ceiling" / "extended"


def chain_key(chain_json: str) -> str:
    return hashlib.sha1(chain_json.encode()).hexdigest()[:16]


def extend(groups: list[list[dict]], n: int, llm, out_dir: Path = EXTENDED) -> dict[str, list[bool]]:
    """Every parent's and sibling's correctness on the ``n`` search examples after its collection's 32, per chain
    (``chain_key``), for the groups' (task, sample) cells: evaluated through ``llm`` (cached), saved per cell as it
    goes (a rerun resumes). The environment is the transfer collections' (auto mode, 24 new tokens, 32 search
    examples; ``llm`` their frozen model): first each chain's stored 32 examples are evaluated again and must give
    its stored correctness (cache hits); under any other model or settings they do not, and it stops.
    """
    from tap.env import Environment
    from tap.llm.base import GenerationSettings
    from tap.paths import write_atomic
    from tap.tasks import load_task

    cells: dict[tuple[str, int], list[list[dict]]] = {}
    for g in groups:
        cells.setdefault((g[0]["task"], int(g[0].get("sample", 0))), []).append(g)
    out: dict[str, list[bool]] = {}
    out_dir.mkdir(parents=True, exist_ok=True)
    for (name, sample), cell in sorted(cells.items()):
        path = out_dir / f"{task_slug(name)}-s{sample}-n{n}.json"
        done: dict[str, list[bool]] = json.loads(path.read_text()) if path.exists() else {}
        task = load_task(name, seed=sample)
        env = Environment(llm, task, mode="auto", generation=GenerationSettings(max_new_tokens=24), eval_examples=32)
        first, new = env.order[:32], env.order[32 : 32 + n]
        if len(new) < n:
            raise SystemExit(f"{name} has {len(env.order)} search examples: fewer than 32 + {n}.")
        chains: dict[str, tuple[str, list[bool]]] = {}
        for g in cell:
            for r in g:
                if r["example_uids"] != [ex.uid for ex in first]:
                    raise SystemExit(f"{name} sample {sample}: the collection's examples are not this environment's "
                                     "first 32 (other split settings); nothing was extended.")
                chains[chain_key(r["chain"])] = (r["chain"], list(r["correct"]))
                chains[chain_key(r["next_chain"])] = (r["next_chain"], list(r["next_correct"]))
        todo = [k for k in chains if k not in done]
        for i, k in enumerate(tqdm(todo, desc=f"extend {task_slug(name)} s{sample}")):
            chain = Chain.from_json(chains[k][0])
            again = [res.correct for res in env.evaluate(chain, first).results]
            if again != chains[k][1]:
                raise SystemExit(f"{name} sample {sample}: a stored chain's 32 examples did not reproduce "
                                 f"({sum(a != b for a, b in zip(again, chains[k][1]))} answers differ): another frozen "
                                 "model or settings than the collection's; nothing more was extended.")
            done[k] = [res.correct for res in env.evaluate(chain, new).results]
            if (i + 1) % 50 == 0:
                write_atomic(path, json.dumps(done))
        write_atomic(path, json.dumps(done))
        out |= done
    return out


def extended_predictions(p: dict, groups: list[list[dict]], correct: dict[str, list[bool]]) -> dict:
    """``p`` (``within_op.predictions`` of ``groups``) judged at 32 examples: half A is each sibling's change on
    the collection's 32 examples (``real``), half B its change on the new ones.
    """
    rows = [r for g in groups for r in g]  # collate_siblings' order, as predictions'
    new = torch.tensor([statistics.mean(correct[chain_key(r["next_chain"])])
                        - statistics.mean(correct[chain_key(r["chain"])]) for r in rows], dtype=torch.float64)
    return p | {"half_a": p["real"].double(), "half_b": new}


def report32(s16: dict, s32: dict, ci16: dict, ci32: dict, samples: list[int], groups: int, n: int) -> str:
    lines = [f"Transfer set, samples {samples}, {groups} sibling groups. At 16: the two halves of the collection's 32 "
             f"examples; at 32: the collection's 32 against {n} new search examples (every scorer judged on the new "
             "ones). Shares: mean over tasks; mean ± 95 % interval over seeds, [bootstrap 95 % over groups]; "
             "`model − prior` is the paired difference of the two shares (ahead only if its interval is above 0).", "",
             "| family | scorer | sibling ρ / ceiling, at 16 | at 32 (measured) | edit ρ / ceiling, at 16 | at 32 |",
             "|---|---|---|---|---|---|"]
    for fam in s32:
        for who in ("model", "prior", "gap"):
            cells = []
            for kind in ("sib", "edit"):
                for s, c in ((s16, ci16), (s32, ci32)):
                    lo, hi = c[fam][f"{who}/{kind}"]
                    cells.append(f"{fmt(s[fam][who][f'{kind}_share'], 2)} [{lo:.2f}, {hi:.2f}]")
            lines.append(f"| {fam} | {LABEL.get(who, who)} | " + " | ".join(cells) + " |")
    first16, first32 = next(iter(s16.values()))["ceiling"], next(iter(s32.values()))["ceiling"]
    lines += ["", "| task | groups with an order at 16 / 32 | sibling ρ ceiling at 16 | stepped up to 32 | "
              "measured at 32 | edit ρ ceiling at 16 / 32 |", "|---|---|---|---|---|---|"]
    for t, c in first16["sib_half"].items():
        lines.append(f"| {t} | {first16['groups'][t]} / {first32['groups'][t]} | {c:.3f} | {2 * c / (1 + c):.3f} | "
                     f"{first32['sib_half'][t]:.3f} | {first16['edit_half'][t]:.3f} / {first32['edit_half'][t]:.3f} |")
    return "\n".join(lines) + "\n"


def command(args: argparse.Namespace, samples: list[int]) -> str:
    cmd = f"python benchmarks/sibling_ceiling.py --tags {' '.join(args.tags)}"
    default_data = ROOT / "configs" / "data" / "ii_transfer.yaml"
    cmd += f" --data {shown(args.data)}" if args.data.resolve() != default_data else ""
    cmd += f" --samples {' '.join(map(str, samples))}" if args.samples else ""
    cmd += f" --draws {args.draws}" if args.draws != 2000 else ""
    cmd += f" --extend {args.extend}" if args.extend else ""
    default_out = OUT.with_name("ceiling32.json") if args.extend else OUT
    return cmd + (f" --out {shown(args.out)}" if args.out.resolve() != default_out else "")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_group_args(ap)
    ap.add_argument("--draws", type=int, default=2000, help="bootstrap draws over groups")
    ap.add_argument("--extend", type=int, default=0,
                    help="also evaluate every chain on this many new search examples and measure the ceiling at 32 "
                         "(LLM calls, cached; 0: off)")
    ap.add_argument("--out", type=Path, default=None, help=f"results JSON (default: {shown(OUT)}, or ceiling32.json "
                                                            "beside it with --extend)")
    args = ap.parse_args(argv)
    args.out = args.out or (OUT.with_name("ceiling32.json") if args.extend else OUT)
    if args.draws < 100:
        raise SystemExit(f"--draws {args.draws}: a 95 % percentile interval needs at least 100 draws.")
    if args.extend < 0:
        raise SystemExit(f"--extend {args.extend}: the number of new examples must be >= 0 (0: off).")
    dm = _datamodule(args.data, **({"samples": args.samples} if args.samples else {}))
    groups = dm.groups["test"].items
    if not groups:
        raise SystemExit(f"{args.data} has no sibling groups in its test split; collect them with "
                         f"`python -m tap.collect --config {args.data}`.")
    correct = None
    llm = model_slug(dm.hparams.model)  # the frozen LLM the groups were collected from
    smollm2 = llm == model_slug("smollm2")
    if args.extend:  # evaluated with that LLM; another LLM's extensions are kept apart from SmolLM2's
        correct = extend(groups, args.extend, dm.llm, out_dir=EXTENDED if smollm2 else EXTENDED / llm)
    ckpts = [c for tag in args.tags for c in meta_checkpoints(tag, PLAN)]
    judged: dict[str, dict] = {"16": {}, "32": {}}
    data: dict[str, dict] = {}
    for ckpt in tqdm(ckpts, desc="checkpoints"):
        wm, _ = load_world_model(ckpt)
        p = predictions(wm, groups)
        for size, q in (("16", p), ("32", extended_predictions(p, groups, correct) if correct else None)):
            if q is None:
                continue
            data.setdefault(size, q)
            r = read_outs(q)
            r["_model"], r["_prior"] = q["model"], q["prior"]
            judged[size][ckpt.name] = r
    old = noise_ceiling(32) if smollm2 else {}  # noise_ceiling.json: measured on SmolLM2
    summary: dict[str, dict] = {"16": {}, "32": {}}
    ci: dict[str, dict] = {"16": {}, "32": {}}
    for size, results in judged.items():
        for fam, runs in seed_families(results).items():
            summary[size][fam] = family_summary(runs, old)
            ci[size][fam] = bootstrap(runs, data[size], args.draws, seed=0)
        for r in results.values():
            del r["_model"], r["_prior"]
    if correct:
        text = report32(summary["16"], summary["32"], ci["16"], ci["32"], dm.samples, len(groups), args.extend)
        payload = {"summary": summary, "bootstrap": ci, "runs": judged}
    else:
        text = report(summary["16"], ci["16"], dm.samples, len(groups))
        payload = {"summary": summary["16"], "bootstrap": ci["16"], "runs": judged["16"]}
    write_results(args.out, {"machine": machine_info(), "groups": len(groups), "samples": dm.samples, **payload},
                  command(args, dm.samples), text)
    print(text)


if __name__ == "__main__":
    main()
