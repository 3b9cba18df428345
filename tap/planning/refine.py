"""Dyna-style online refinement: the transitions verified on the real LLM during a search go back into
the data, and the world model takes a few gradient steps on them before it plans again.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from tap.chains.chain import Chain
from tap.chains.edits import Edit
from tap.collection.datamodule import collate_windows
from tap.collection.schema import triple_row
from tap.env import Evaluation


def transition_row(task: str, context: str, step: int, chain: Chain, ev: Evaluation, edit: Edit, nxt: Chain,
                   ev_next: Evaluation, source: str, task_pairs: list[str] | None = None) -> dict:
    """One verified transition in the triples' schema (``tap.collection``), so it trains like collected data;
    ``task_pairs``: the task's train pairs the world model conditions on.
    """
    return triple_row(task, 0, step, chain, edit, nxt, ev, ev_next, context=context,
                      task_pairs=list(task_pairs or []), source=source)


class OnlineRefiner:
    """Keeps the verified transitions and fine-tunes the world model's dynamics, heads and edit embedder
    on them (the encoder stays frozen). ``steps=0`` switches refinement off; the rows are kept either way.

    Args:
        world_model: a ``tap.systems.WorldModel`` (refined in place).
        steps: gradient steps after each planning step.
        lr: AdamW learning rate.
        batch_size: transitions per gradient step (drawn from all verified so far).
        seed: seeds the minibatch draws and the model's sampling, so refinement is deterministic.
    """

    def __init__(self, world_model, steps: int = 10, lr: float = 1e-4, batch_size: int = 16, seed: int = 0) -> None:
        self.wm, self.steps, self.lr, self.batch_size = world_model, steps, lr, batch_size
        self.rows: list[dict] = []
        self.rng = random.Random(f"refine:{seed}")
        self.seed = seed
        self.updates = 0
        self._opt: torch.optim.Optimizer | None = None

    def add(self, row: dict) -> None:
        self.rows.append(row)

    def _params(self) -> list[torch.nn.Parameter]:
        return self.wm.refinable_parameters()

    def refine(self) -> dict[str, float]:
        """``steps`` gradient steps on the verified transitions; returns the mean loss terms."""
        if self.steps <= 0 or not self.rows:
            return {}
        params = self._params()
        for p in params:
            p.requires_grad_(True)
        if self._opt is None:
            self._opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=0.0)
        self.wm.train()
        sums: dict[str, float] = {}
        with torch.random.fork_rng(), torch.enable_grad():
            torch.manual_seed(self.seed * 100_003 + self.updates)
            for _ in range(self.steps):
                batch = collate_windows([[self.rng.choice(self.rows)] for _ in range(self.batch_size)])
                terms, _ = self.wm.loss_terms(batch, "train")
                loss = self.wm.total_loss(terms)
                self._opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 10.0)
                self._opt.step()
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v.item() / self.steps
        self.updates += 1
        self.wm.eval()
        for p in params:
            p.requires_grad_(False)
        return sums

    def save(self, path: str | Path) -> Path | None:
        """The verified transitions as an HF dataset (the triples' schema) at ``path``; None if there are none."""
        import datasets

        if not self.rows:
            return None
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        datasets.disable_progress_bars()
        try:
            datasets.Dataset.from_list(self.rows).save_to_disk(str(tmp))
        finally:
            datasets.enable_progress_bars()
        if path.exists():
            import shutil

            shutil.rmtree(path)
        tmp.rename(path)
        return path
