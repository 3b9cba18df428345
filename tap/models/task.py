"""The task as a few of its input/output pairs, as one vector: what lets a world model trained on many
tasks tell what an edit does on a task it has never seen, with nothing collected there.

The pair texts are embedded by the (frozen) text backbone outside this module; here they are
mean-pooled per task (so the order of the pairs, or of the rows in a batch, cannot matter) and
projected by an MLP.
"""

from __future__ import annotations

import torch
from torch import nn

from tap.models.layers import mlp


class TaskEncoder(nn.Module):
    """Pair vectors -> task vectors.

    Args:
        text_dim: size of the backbone's text vectors.
        task_dim: size of the task vector.
        hidden_dim: MLP width.
    """

    def __init__(self, text_dim: int, task_dim: int, hidden_dim: int = 256) -> None:
        super().__init__()
        self.net = mlp(text_dim, hidden_dim, task_dim)

    def forward(self, pairs: torch.Tensor, owner: torch.Tensor, n: int) -> torch.Tensor:
        """Pair vectors (P, text_dim) and ``owner`` (P,) long, the row of each -> (n, task_dim).
        A row without pairs pools to zeros.
        """
        pooled = pairs.new_zeros(n, pairs.shape[-1]).index_add_(0, owner, pairs)  # (n, text_dim)
        count = pairs.new_zeros(n).index_add_(0, owner, torch.ones_like(owner, dtype=pairs.dtype))
        return self.net(pooled / count.clamp_min(1.0).unsqueeze(-1))
