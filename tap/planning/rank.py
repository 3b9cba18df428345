"""``python -m tap.planning.rank``: rank candidate edits of a chain with a trained world model, with no LLM call.

The question the search asks the world model, asked directly: *from this chain, which of these edits will help
most?* For any task (one never trained on needs nothing collected: the model reads the task as its first train
input/output pairs), the chain's candidate edits across the three scales are scored in imagination: the
predicted change of accuracy with its calibrated 80 % interval (``WorldModel.edit_effect``; the interval scale
was fitted so that 80 % of validation edits fell inside), the predicted change of the gold answer's probability,
and beside them the non-learned prior (the edit operation's mean accuracy change in the model's training data)
and the rank it gives. How far either is to be trusted on new tasks: ``docs/studies.md``, "Ranking sibling
edits on tasks never trained on" (against the noise ceiling of a second real evaluation, the benchmarks'
meta-trained models rank a chain's siblings on the transfer set at 0.69 of it with 16 examples per evaluation,
0.59 with 32, and the prior as well or better: 0.69 and 0.64).

    python -m tap.planning.rank --checkpoint checkpoints/quickstart/world_model --task ii:rhymes
    python -m tap.planning.rank --checkpoint ... --task my_task.jsonl --chain final_chain.json --top 10 \
        --out ranked.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from tap.chains import Chain, Edit, apply_edit, edit_space, initial_chain
from tap.errors import TapError, exit_code
from tap.metrics import normal_quantile
from tap.tasks import Task, task_slug


@dataclass(frozen=True)
class RankedEdit:
    """One candidate's reading: predicted accuracy change ``mean`` ± ``std`` (calibrated; the 80 % interval is
    ``mean ± 1.28 std``), predicted change of the gold answer's probability ``dense``, and the prior's score.
    """

    edit: Edit
    mean: float
    std: float
    dense: float
    prior: float

    def interval(self, coverage: float = 0.8) -> tuple[float, float]:
        """The central predictive interval of ``coverage`` for the accuracy change (normal, calibrated std), cut to
        [-1, 1]: no edit changes an accuracy by more than that, whatever the regression head extrapolates to.
        """
        z = normal_quantile(coverage)
        return max(-1.0, self.mean - z * self.std), min(1.0, self.mean + z * self.std)

    @property
    def extrapolated(self) -> bool:
        """Whether the predicted accuracy change itself is beyond what one can be (|Δ| > 1)."""
        return abs(self.mean) > 1.0

    def to_dict(self) -> dict:
        lo, hi = self.interval()
        return {"edit": self.edit.to_dict(), "describe": self.edit.describe(), "mean": self.mean, "std": self.std,
                "interval80": [lo, hi], "dense": self.dense, "prior": self.prior}


def rank_edits(wm, task: Task, chain: Chain, edits: list[Edit], task_pairs: int = 4) -> list[RankedEdit]:
    """``edits`` of ``chain`` ranked by the world model's predicted accuracy change (best first; ties keep the
    given order), each with its interval, predicted dense change and the prior's score.
    """
    if not edits:
        raise TapError("no candidate edits to rank: the chain admits none (or none was given).")
    for e in edits:
        apply_edit(chain, e).validate()  # an edit that does not apply is an EditError naming it, before any scoring
    from tap.planning.halving import imagined_effects

    mean, std = imagined_effects(wm, task, chain, [(e,) for e in edits], task_pairs)
    prior = wm.op_prior(torch.tensor([e.op_id for e in edits], dtype=torch.long, device=wm.op_delta.device)).cpu()
    out = [RankedEdit(e, float(mean[i, 0]), float(std[i, 0]), float(mean[i, 1]), float(prior[i]))
           for i, e in enumerate(edits)]
    order = sorted(range(len(out)), key=lambda i: (-out[i].mean, i))
    return [out[i] for i in order]


def shown(edit: Edit, width: int = 70) -> str:
    """``edit.describe()``, a demonstration shown as its input -> output (cut to ``width`` characters)."""
    p = edit.payload
    if isinstance(p, dict) and "input" in p:
        demo = f"{p['input']!r} -> {p.get('output', p.get('answer'))!r}"
        text = f"{edit.scale}.{edit.op}{list(edit.target)} {demo}"
    else:
        text = edit.describe()
    return text if len(text) <= width else text[: width - 1] + "…"


def prior_ranks(ranked: list[RankedEdit]) -> list[int]:
    """Each edit's rank (1 = best) under the prior, ties sharing the best rank of their tie."""
    return [1 + sum(o.prior > r.prior for o in ranked) for r in ranked]


def report(task_name: str, chain: Chain, ranked: list[RankedEdit], top: int, trained_on: list[str]) -> str:
    """The printed ranking: whether the task was trained on (``trained_on``: the checkpoint's tasks), the chain,
    the ``top`` rows, and how to read the columns.
    """
    seen = task_name in trained_on or task_slug(task_name) in {task_slug(t) for t in trained_on}
    lines = [f"task {task_name}: {'trained on' if seen else 'never trained on'} by this world model; "
             f"{len(ranked)} candidate edits scored in imagination (no LLM call)",
             "chain:", *("  " + line for line in chain.describe().splitlines()), "",
             f"{'rank':>4}  {'Δacc':>7}  {'80 % interval':>17}  {'Δgold p':>7}  {'prior':>7}  {'prior rank':>10}  edit"]
    ranks = prior_ranks(ranked)
    for i, (r, pr) in enumerate(zip(ranked[:top], ranks)):
        lo, hi = r.interval()
        lines.append(f"{i + 1:>4}  {r.mean:+7.3f}{'*' if r.extrapolated else ' '} [{lo:+7.3f}, {hi:+7.3f}]  "
                     f"{r.dense:+7.3f}  {r.prior:+7.3f}  {pr:>10}  {shown(r.edit)}")
    if len(ranked) > top:
        lines.append(f"({len(ranked) - top} more; --top {len(ranked)} shows all, --out writes all)")
    lines.append("Δacc, Δgold p: the world model's predicted change of accuracy and of the gold answer's probability; "
                 "prior: the operation's mean accuracy change in its training data (ties share a rank); "
                 "intervals are cut to [-1, 1].")
    if any(r.extrapolated for r in ranked[:top]):
        lines.append("*: beyond what an accuracy change can be; the model extrapolates (read it as 'large', and its "
                     "order among such edits loosely).")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip("`"),
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a WorldModel checkpoint (.ckpt or run folder)")
    p.add_argument("--task", required=True,
                   help="bigbench:NAME, bigbench:parent/subtask, ii:NAME (python -m tap.tasks), or a .jsonl/.csv file")
    p.add_argument("--chain", help="the chain to edit: a JSON file written by Chain.to_json / final_chain.json "
                                   "(default: the task's initial chain, as a search starts)")
    p.add_argument("--candidates", type=int, default=48,
                   help="distinct candidate edits to draw (the three scales in turn)")
    p.add_argument("--top", type=int, default=20, help="rows to print")
    p.add_argument("--seed", type=int, default=0, help="seeds the task's split and the candidates' draw")
    p.add_argument("--task-pairs", type=int, default=None,
                   help="train pairs that describe the task to the model (default: as the checkpoint was trained)")
    p.add_argument("--out", help="also write every ranked edit to this JSON file")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> list[RankedEdit]:
    from tap.planning.halving import load_world_model
    from tap.tasks import load_task

    if args.candidates < 1 or args.top < 1:
        raise TapError(f"--candidates ({args.candidates}) and --top ({args.top}) must be at least 1.")
    wm, data = load_world_model(args.checkpoint)
    task = load_task(args.task, seed=args.seed)
    chain = initial_chain(task.description)
    if args.chain:
        try:
            chain = Chain.from_json(Path(args.chain).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as err:
            raise TapError(f"cannot read the chain {args.chain}: {err}") from err
    chain.validate()
    edits = edit_space(task).propose(chain, args.candidates, random.Random(args.seed))
    pairs = args.task_pairs if args.task_pairs is not None else int(data.get("task_pairs", 4))
    ranked = rank_edits(wm, task, chain, edits, pairs)
    print(report(args.task, chain, ranked, args.top, list(data.get("tasks") or [])))
    if args.out:
        from tap.paths import write_atomic

        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, json.dumps({"task": args.task, "chain": json.loads(chain.to_json()),
                                      "checkpoint": str(args.checkpoint), "task_pairs": pairs, "seed": args.seed,
                                      "ranked": [r.to_dict() for r in ranked]}, indent=1, ensure_ascii=False))
        print(f"wrote {out}")
    return ranked


def main(argv: list[str] | None = None) -> int:
    from tap.quiet import quiet

    quiet()
    args = parse_args(argv)
    return exit_code(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
