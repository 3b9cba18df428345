"""The imagination policy's networks: an actor that scores candidate edits and a critic."""

from __future__ import annotations

import torch
from torch import nn

from tap.models.layers import mlp


class Actor(nn.Module):
    """Scores each candidate edit from the world-model features of the chain it would edit.

    ``forward(features (B, F), actions (B, K, A)) -> logits (B, K)``; a softmax over a step's K
    candidates is the policy.
    """

    def __init__(self, feature_dim: int, action_dim: int, hidden_dim: int = 256) -> None:
        super().__init__()
        self.net = mlp(feature_dim + action_dim, hidden_dim, 1)
        nn.init.zeros_(self.net[-1].weight)  # starts uniform over the candidates
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        f = features.unsqueeze(1).expand(-1, actions.shape[1], -1)  # (B, K, F)
        return self.net(torch.cat([f, actions], -1)).squeeze(-1)  # (B, K)


class Critic(nn.Module):
    """``forward(features (B, F)) -> value (B,)``: the expected lambda-return from a state."""

    def __init__(self, feature_dim: int, hidden_dim: int = 256) -> None:
        super().__init__()
        self.net = mlp(feature_dim, hidden_dim, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1)
