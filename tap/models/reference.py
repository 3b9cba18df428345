"""Reference world models for the same data and interface, so the hierarchy earns its place by measurement.

Both see and predict the chain latent only (never the instruction/segment/token latents), and use
the same edit embedding, read-out heads and losses as the hierarchy:

- ``FlatRSSM``: one RSSM level observed through the chain latent (no levels).
- ``DemoWorldModel``: the authors' demo design: one deterministic latent (the chain latent),
  ``next = z + MLP([z, action])``, with the reward read out by an MLP.
"""

from __future__ import annotations

import torch

from tap.models.layers import mlp
from tap.models.world_model import RSSM, State, WorldModelNet


class FlatRSSM(RSSM):
    """An RSSM with one level, observed through the encoder's chain latent."""

    def __init__(self, latent_dim: int, action_dim: int, deter_dim: int = 128, stoch_dim: int = 32,
                 hidden_dim: int = 256, min_std: float = 0.1, heads: dict | None = None, task_dim: int = 0) -> None:
        super().__init__(latent_dim, action_dim, ("chain",), deter_dim, stoch_dim, hidden_dim, min_std, heads,
                         task_dim)


class DemoWorldModel(WorldModelNet):
    """``z_0`` = chain latent; ``z_{t+1} = z_t + MLP([z_t, a_t])``; deterministic, no KL.

    Args:
        latent_dim: encoder latent size (= the state size).
        action_dim: edit embedding size.
        hidden_dim: MLP width.
        heads: keyword arguments of ``Heads``.
        task_dim: size of the task vector the heads read (0: no task conditioning).
    """

    def __init__(self, latent_dim: int, action_dim: int, hidden_dim: int = 256, heads: dict | None = None,
                 task_dim: int = 0) -> None:
        super().__init__(latent_dim, latent_dim, action_dim, hidden_dim, heads, latent_keys=("chain",),
                         task_dim=task_dim)
        self.delta = mlp(latent_dim + action_dim, hidden_dim, latent_dim)

    def _observe_core(self, obs: dict[str, torch.Tensor], sample: bool) -> State:
        return {"z": obs["chain"]}

    def _step_core(self, state: State, action: torch.Tensor, scale: torch.Tensor, sample: bool) -> State:
        return {"z": state["z"] + self.delta(torch.cat([state["z"], action], -1))}

    def _core_features(self, state: State) -> torch.Tensor:
        return state["z"]
