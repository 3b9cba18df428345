"""Edit embeddings: ``(scale, op, target, payload) -> (action_dim,)`` for the world model and the planner."""

from __future__ import annotations

import torch
from torch import nn

from tap.chains.edits import OP_IDS, SCALES
from tap.models.layers import mlp


class EditEmbedder(nn.Module):
    """Sum of learned embeddings of scale, op and the two target slots, plus the projected payload
    text vector, passed through an MLP.

    Args:
        payload_dim: size of the payload text vectors (the encoder backbone's width).
        action_dim: output size.
        max_target: target integers above this share one row (chains rarely have more steps or words
            than this per segment that matter for the effect of an edit).
    """

    def __init__(self, payload_dim: int, action_dim: int = 64, max_target: int = 31) -> None:
        super().__init__()
        self.max_target = max_target
        self.scale = nn.Embedding(len(SCALES), action_dim)
        self.op = nn.Embedding(len(OP_IDS), action_dim)
        self.target = nn.ModuleList(nn.Embedding(max_target + 2, action_dim) for _ in range(2))  # row 0 = none
        self.payload = nn.Linear(payload_dim, action_dim)
        self.out = mlp(action_dim, action_dim, action_dim)

    def forward(self, scale: torch.Tensor, op: torch.Tensor, target: torch.Tensor,
                payload: torch.Tensor) -> torch.Tensor:
        """scale, op (...,) long; target (..., 2) long (-1 = none); payload (..., payload_dim) -> (..., action_dim)."""
        t = (target + 1).clamp(0, self.max_target + 1)
        x = self.scale(scale) + self.op(op) + self.target[0](t[..., 0]) + self.target[1](t[..., 1])
        return self.out(x + self.payload(payload))
