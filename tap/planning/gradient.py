"""Gradient planning: relax the choice among K candidate edits per step to softmax weights, roll the
world model H steps on the weighted edit embeddings, and ascend the predicted discounted return minus
an uncertainty penalty. The candidates are then ranked as hard first edits followed by the optimised
soft plan, and the search takes the best first edit, applies it in text and plans again (MPC).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tap.models import State


@dataclass
class GradientConfig:
    """Knobs of the relaxed planner.

    Args:
        plan_length: edits per imagined plan (H). (Not the collection's ``horizon``, the edits per
            collected trajectory, nor the policy's ``rollout_horizon``.)
        steps: gradient-ascent steps on the plan's logits.
        lr: Adam learning rate on the logits.
        temperature: softmax temperature of the relaxation (lower: closer to a hard choice).
        uncertainty_penalty: weight of the reward ensemble's spread subtracted from each reward.
        discount: per-step discount of predicted rewards.
        restarts: plans optimised in parallel from different random logits; the best is kept.
        init_noise: scale of the random initial logits (added to the prior's, if any).
    """

    plan_length: int = 3
    steps: int = 30
    lr: float = 0.1
    temperature: float = 1.0
    uncertainty_penalty: float = 0.5
    discount: float = 0.9
    restarts: int = 4
    init_noise: float = 0.5


@dataclass
class PlanScores:
    """What the gradient planner says about K candidate first edits."""

    returns: torch.Tensor  # (K,) predicted return when the candidate is the first edit of the plan
    first_weights: torch.Tensor  # (K,) optimised soft weights of the plan's first step
    objective: float  # the best relaxed plan's objective


def _expand(state: State, n: int) -> State:
    return {k: v.expand(n, *v.shape[1:]) for k, v in state.items()}


class GradientPlanner:
    """Optimises relaxed H-step plans through a frozen world model (anything with ``imagine``,
    ``planning_reward``, e.g. ``tap.systems.WorldModel``).
    """

    def __init__(self, world_model, config: GradientConfig | None = None) -> None:
        self.wm = world_model
        self.config = config or GradientConfig()
        c = self.config
        if c.plan_length < 1 or c.steps < 0 or c.restarts < 1 or c.temperature <= 0:
            raise ValueError(f"invalid gradient planner settings {c}: need plan_length >= 1, steps >= 0, restarts >= 1 "
                             "and temperature > 0.")

    def _objective(self, state: State, actions: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        """(N,) discounted sum of reward - penalty * uncertainty over the imagined states."""
        c = self.config
        total = torch.zeros(actions.shape[0], device=actions.device)
        for t, s in enumerate(self.wm.imagine(state, actions, scales)):
            total = total + c.discount**t * self.wm.planning_reward(s, c.uncertainty_penalty)
        return total

    def plan(self, state: State, actions: torch.Tensor, scales: torch.Tensor, prior_logits: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> PlanScores:
        """Plan from one observed ``state`` (batch 1) over candidates ``actions`` (K, A), ``scales`` (K, 3).

        ``prior_logits`` (K,), e.g. an imagination policy's scores, seed the relaxed plan's logits.
        """
        c = self.config
        state = {k: v.detach() for k, v in state.items()}
        actions, scales = actions.detach(), scales.detach()
        K = actions.shape[0]
        noise = torch.randn(c.restarts, c.plan_length, K, generator=generator) * c.init_noise  # (R, H, K)
        logits = noise.to(actions.device)
        if prior_logits is not None:
            logits = logits + prior_logits.detach().view(1, 1, K)
        logits.requires_grad_(True)
        start = _expand(state, c.restarts)
        opt = torch.optim.Adam([logits], lr=c.lr)
        with torch.enable_grad():
            for _ in range(c.steps):
                w = torch.softmax(logits / c.temperature, -1)  # (R, H, K)
                objective = self._objective(start, w @ actions, w @ scales)  # (R,)
                opt.zero_grad()
                (-objective.sum()).backward()
                opt.step()
        with torch.no_grad():
            w = torch.softmax(logits / c.temperature, -1)
            objective = self._objective(start, w @ actions, w @ scales)
            best = int(objective.argmax())
            plan_a, plan_s = w[best] @ actions, w[best] @ scales  # (H, A), (H, 3)
            # each candidate as a hard first edit, then the optimised soft plan
            hard_a = plan_a.unsqueeze(0).repeat(K, 1, 1)
            hard_s = plan_s.unsqueeze(0).repeat(K, 1, 1)
            hard_a[:, 0], hard_s[:, 0] = actions, scales
            returns = self._objective(_expand(state, K), hard_a, hard_s)
        return PlanScores(returns, w[best, 0], float(objective[best]))
