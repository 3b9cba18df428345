"""Does the frozen LLM's own reading of a chain order the sibling edits of a new task?

Every representation tried so far describes the chain's text (MiniLM, the learned encoder, the edit's identity,
its length, its fluency), and none orders a new task's same-operation siblings (``within_op.py``,
``online_rank.py``: 0.507-0.528, a real first-half evaluation 0.70). Surrogates such as INSTINCT's NeuralUCB read
the prompt through a language model's hidden states instead. Here the model is the one whose reading decides the
outcome: the frozen LLM. Per chain, the prompt the environment sends with an empty question goes through the LLM
once (``TransformersLLM.prompt_states``: final-layer hidden states mean-pooled over the prompt's tokens; no example,
no answer, no outcome read); an edit's feature is ``h(child) − h(parent)``. Two uses, judged as ``online_rank.py``
judges (second half of each transfer group's examples, five samples):

- ``prior+llm-ridge`` (zero-shot, learned): the prior's exact ties broken by a ridge regression from the
  standardised edit feature to the measured accuracy change minus the operation prior, fitted on the wide pool's
  training groups (``configs/data/ii_pool_wide.yaml``, no transfer task), its penalty chosen from ``PENALTIES`` by
  leave-one-task-out mean squared error over the pool's tasks;
- ``prior+op+llm`` (inside the search): ``online_rank.py``'s Gaussian process with an RBF kernel on the unit-
  normalised LLM edit features, ``k`` other groups of the cell observed on the first half; beside it the same
  draws with the ``op``, ``payload`` and ``wm`` kernels.

The features are cached per (LLM, prompt) under ``<cache>/llm_states/`` (written atomically as they come), so a
rerun reads no model. The plan and its rules: ``benchmarks/results/within_op/PLAN.md`` addendum 4.

    python benchmarks/llm_rank.py --tags hierarchical-transfer --samples 0 1 2 3 4 --k 2 8 31
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from meta_runs import meta_checkpoints, shown, write_results  # noqa: E402
from online_rank import KERNELS, add_draw_args, read_outs, report  # noqa: E402
from prior_variants import _datamodule  # noqa: E402
from within_op import lexicographic, predictions  # noqa: E402

from tap.chains.chain import Chain  # noqa: E402
from tap.chains.render import render_messages  # noqa: E402
from tap.machine import machine_info  # noqa: E402
from tap.paths import cache_dir  # noqa: E402
from tap.planning.search import load_world_model  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "within_op" / "llm.json"
POOL = ROOT / "configs" / "data" / "ii_pool_wide.yaml"
PENALTIES = (1.0, 10.0, 100.0, 1000.0, 10000.0)
PLAN = "benchmarks/results/within_op/PLAN.md"
#: (a, b): a − b selection gain per group, in the report
PAIRS = (("prior+llm-ridge", "prior"), ("prior+op+llm", "prior"), ("prior+op+llm", "prior+op+wm"),
         ("prior+op+llm", "prior+op+payload"), ("prior+op+wm", "prior"))


def chain_prompt(format_chat: Callable[[list], str], chain_json: str) -> str:
    """The prompt the environment would send for ``chain_json`` with an empty question."""
    return format_chat(render_messages(Chain.from_json(chain_json), ""))


class StateCache:
    """Prompt -> the LLM's ``prompt_states`` vector, on disk per LLM name; computes only the missing ones."""

    def __init__(self, llm, path: Path | None = None, chunk: int = 64, save_every: int = 10) -> None:
        self.llm, self.chunk, self.save_every = llm, chunk, save_every
        safe = "".join(c if c.isalnum() or c in "-_.@" else "_" for c in llm.name)
        self.path = path or cache_dir() / "llm_states" / f"{safe}.pt"
        self.rows: dict[str, torch.Tensor] = torch.load(self.path) if self.path.exists() else {}

    @staticmethod
    def key(prompt: str) -> str:
        return hashlib.sha256(prompt.encode()).hexdigest()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        torch.save(self.rows, tmp)
        os.replace(tmp, self.path)

    def __call__(self, prompts: Sequence[str]) -> torch.Tensor:
        """(N, D) the states of ``prompts``; the missing ones computed in chunks, the file rewritten every
        ``save_every`` chunks and at the end (an interrupted run loses at most that many).
        """
        todo = sorted({self.key(p): p for p in prompts if self.key(p) not in self.rows}.items())
        starts = range(0, len(todo), self.chunk)
        for n, i in enumerate(tqdm(starts, desc="LLM states", disable=not todo), 1):
            part = todo[i : i + self.chunk]
            for (k, _), row in zip(part, self.llm.prompt_states([p for _, p in part])):
                self.rows[k] = row.clone()
            if n % self.save_every == 0 or n == len(starts):
                self._save()
        return torch.stack([self.rows[self.key(p)] for p in prompts])


def edit_features(groups: list[list[dict]], states: Callable[[Sequence[str]], torch.Tensor],
                  format_chat: Callable[[list], str]) -> torch.Tensor:
    """(N, D) float64 ``h(child) − h(parent)`` per sibling, in ``within_op.predictions``' order."""
    rows = [r for g in groups for r in g]
    parent = states([chain_prompt(format_chat, r["chain"]) for r in rows])
    child = states([chain_prompt(format_chat, r["next_chain"]) for r in rows])
    return (child - parent).double()


def ridge(x: torch.Tensor, y: torch.Tensor, penalty: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (D,) and intercept of ``min |y - x w - b|^2 + penalty |w|^2`` (the intercept not penalised)."""
    mx, my = x.mean(0), y.mean()
    xc = x - mx
    w = torch.linalg.solve(xc.T @ xc + penalty * torch.eye(x.shape[1], dtype=x.dtype), xc.T @ (y - my))
    return w, my - mx @ w


def choose_penalty(x: torch.Tensor, y: torch.Tensor, task: torch.Tensor,
                   penalties: Sequence[float] = PENALTIES) -> tuple[float, dict[float, float]]:
    """The penalty with the lowest leave-one-task-out mean squared error (mean over held-out tasks), and each one's."""
    errors = {}
    for lam in penalties:
        per_task = []
        for t in task.unique():
            held = task == t
            w, b = ridge(x[~held], y[~held], lam)
            per_task.append(float(((x[held] @ w + b - y[held]) ** 2).mean()))
        errors[lam] = sum(per_task) / len(per_task)
    return min(errors, key=lambda lam: (errors[lam], lam)), errors


class Standardiser:
    """Per-dimension centring and scaling learnt on the training features (scale floored at 1e-8)."""

    def __init__(self, x: torch.Tensor) -> None:
        self.mean, self.std = x.mean(0), x.std(0).clamp_min(1e-8)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def ridge_scores(pool: dict, pool_x: torch.Tensor, test: dict, test_x: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """(N,) the prior's ties broken by the ridge's predicted residual on ``test``; and what was chosen."""
    norm = Standardiser(pool_x)
    x, y = norm(pool_x), (pool["real"].double() - pool["prior"].double())
    lam, errors = choose_penalty(x, y, pool["task"])
    w, b = ridge(x, y, lam)
    pred = norm(test_x) @ w + b
    return lexicographic(test["prior"], pred), {"penalty": lam, "loto_mse": errors, "pool_edits": len(y)}


def command(args: argparse.Namespace) -> str:
    """The command line that makes these results again: every option not at its default."""
    cmd = f"python benchmarks/llm_rank.py --tags {' '.join(args.tags)}"
    cmd += f" --samples {' '.join(map(str, args.samples))}" if args.samples else ""
    cmd += f" --k {' '.join(map(str, args.k))}"
    cmd += f" --model {args.model}" if args.model != "smollm2" else ""
    cmd += f" --pool-config {shown(args.pool_config)}" if args.pool_config.resolve() != POOL else ""
    return cmd + (f" --out {shown(args.out)}" if args.out.resolve() != OUT else "")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_draw_args(ap)
    ap.add_argument("--model", default="smollm2", help="the frozen LLM whose reading is used (the collection's)")
    ap.add_argument("--pool-config", type=Path, default=POOL, help="the ridge's training groups (split train)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if min(args.k) < 0:
        raise SystemExit("--k must be >= 0")
    data = ROOT / "configs" / "data" / "ii_transfer.yaml"
    dm = _datamodule(data, **({"samples": args.samples} if args.samples else {}))
    groups, pool_groups = dm.groups["test"].items, _datamodule(args.pool_config).groups["train"].items
    for name, g, cfg in (("transfer", groups, data), ("pool", pool_groups, args.pool_config)):
        if not g:
            raise SystemExit(f"the {name} config {cfg} has no sibling groups; collect them with "
                             f"`python -m tap.collect --config {shown(cfg)}`.")
    from tap.llm import load_llm

    llm = load_llm(args.model).llm  # the backend (threads: $TAP_THREADS); the call cache holds no hidden states
    states = StateCache(llm)
    test_x = edit_features(groups, states, llm.format_chat)
    pool_x = edit_features(pool_groups, states, llm.format_chat)
    results, ridge_info = {}, {}
    for tag in args.tags:
        for ckpt in meta_checkpoints(tag, PLAN):
            wm, _ = load_world_model(ckpt)
            p = predictions(wm, groups) | {"llm": test_x}
            fixed, ridge_info[ckpt.name] = ridge_scores(predictions(wm, pool_groups), pool_x, p, test_x)
            results[ckpt.name] = read_outs(p, args.k, 0.1, 0.1, kernels=(*KERNELS, "llm"),
                                           fixed={"prior+llm-ridge": fixed})
            print(f"{ckpt.name}: done (ridge penalty {ridge_info[ckpt.name]['penalty']:g})", flush=True)
    text = report(results, args.k, PAIRS)
    write_results(args.out, {"machine": machine_info(), "llm": llm.name, "groups": len(groups),
                             "pool_groups": len(pool_groups), "samples": dm.samples, "ridge": ridge_info,
                             "runs": results}, command(args), text)
    print(text)


if __name__ == "__main__":
    main()
