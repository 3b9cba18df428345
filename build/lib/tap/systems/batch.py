"""Turning a batch of trajectory windows (``collate_windows``) into the inputs the systems need."""

from __future__ import annotations

import torch

from tap.models.encoder import ChainViews


def window_views(batch: dict) -> tuple[list[str], list[ChainViews]]:
    """Contexts and views of every chain in the batch, row-major: index b * (L + 1) + t."""
    contexts, views = [], []
    for b, ctx in enumerate(batch["context"]):
        for t in range(len(batch["instruction_text"][b])):
            contexts.append(ctx)
            views.append({"instruction": batch["instruction_text"][b][t], "segments": batch["segments"][b][t],
                          "tokens": batch["token_text"][b][t]})
    return contexts, views


def task_ids(tasks: list[str], registry: dict[str, int]) -> torch.Tensor:
    """(B,) ids for task names, growing ``registry`` with unseen names (ids are stable within a run)."""
    for t in tasks:
        registry.setdefault(t, len(registry))
    return torch.tensor([registry[t] for t in tasks], dtype=torch.long)


def unique_chains(batch: dict) -> dict:
    """Every distinct chain in the batch once, with how the LLM responded to it.

    Returns ``contexts``, ``views`` (lists of N), ``task`` (list of N), ``correct``/``gold_prob`` (N, E),
    ``mask`` (N, E), ``reward`` (N,). Overlapping windows repeat chains; duplicates are dropped so that a
    chain is never its own positive.
    """
    contexts, views = window_views(batch)
    B, T = batch["reward"].shape
    keep, seen = [], set()
    for i, (c, v) in enumerate(zip(contexts, views)):
        key = (batch["task"][i // T], c, v["instruction"], v["tokens"], tuple(v["segments"]))
        if key not in seen:
            seen.add(key)
            keep.append(i)
    idx = torch.tensor(keep, dtype=torch.long)
    E = batch["correct"].shape[-1]
    mask = batch["example_mask"][:, None, :].expand(B, T, E).reshape(B * T, E)
    return {"contexts": [contexts[i] for i in keep], "views": [views[i] for i in keep],
            "task": [batch["task"][i // T] for i in keep],
            "correct": batch["correct"].reshape(B * T, E)[idx], "gold_prob": batch["gold_prob"].reshape(B * T, E)[idx],
            "mask": mask[idx], "reward": batch["reward"].reshape(B * T)[idx]}
