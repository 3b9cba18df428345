"""World-model networks and the narrow interface planners use.

A state stands for one chain. ``observe`` builds it from the encoder's latents of a real chain;
``step`` / ``imagine`` apply edit embeddings without the LLM; ``reward``, ``uncertainty``,
``predict_latents`` and ``predict_response`` read it out (see ``tap.models.heads``). Edits come as
an action embedding (B, A) plus scale weights (B, 3) in ``SCALES`` order: one-hot for a real edit,
soft weights when a planner relaxes its choice among candidates.

``HierarchicalRSSM`` (the TaP model): an RSSM (Hafner et al., 2019, "PlaNet"; DreamerV3) per level,
instruction > segment > token, each with a deterministic GRU state h and a Gaussian stochastic
latent s. An edit enters only the GRU of its own scale; the change then flows up (each level's new
state is summarised into its parent's GRU input, token -> segment -> instruction) and down (each
level is corrected by its parent's new state, instruction -> segment -> token).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tap.chains.edits import SCALES
from tap.models.encoder import LATENT_KEYS, LEVELS
from tap.models.heads import Heads
from tap.models.layers import mlp

State = dict[str, torch.Tensor]


class WorldModelNet(nn.Module):
    """The interface: ``observe``, ``step``/``imagine``, ``kl``, ``features`` and the read-outs.

    Every state also carries the encoder latents it predicts (``lat/<key>`` for each of its
    ``latent_keys``: all of ``LATENT_KEYS`` for the hierarchy, the chain latent alone for single-latent
    models): exact for an observed chain, and for an imagined one the previous prediction moved by a learned,
    zero-initialised residual ``normalize(z + MLP([core, z, action]))``. Before any training a model
    therefore predicts "the edit changes nothing", which is already a strong guess (most edits move
    a chain's latent little), and learns the change from there. The heads read the core recurrent
    features together with these latents.

    A state also carries the task vector ``task`` (B, task_dim) it was observed with (observations
    give it as ``obs["task"]``, zeros when absent): the task as a few of its input/output pairs, so
    that the heads can tell what an edit does *on this task*, including a task never trained on. It
    does not change under edits.

    Subclasses implement the recurrent core: ``_observe_core``, ``_step_core``, ``_core_features``.
    """

    def __init__(self, core_dim: int, latent_dim: int, action_dim: int, hidden_dim: int = 256,
                 heads: dict | None = None, latent_keys: tuple[str, ...] = LATENT_KEYS, task_dim: int = 0) -> None:
        super().__init__()
        self.latent_dim, self.action_dim, self.latent_keys = latent_dim, action_dim, tuple(latent_keys)
        self.task_dim = task_dim
        self.feature_dim = core_dim + len(self.latent_keys) * latent_dim + task_dim
        self.latent_step = nn.ModuleDict({k: mlp(core_dim + latent_dim + action_dim, hidden_dim, latent_dim)
                                          for k in self.latent_keys})
        for m in self.latent_step.values():
            nn.init.zeros_(m[-1].weight)
            nn.init.zeros_(m[-1].bias)
        self.heads = Heads(self.feature_dim, **(heads or {}))

    def _observe_core(self, obs: dict[str, torch.Tensor], sample: bool) -> State:
        raise NotImplementedError

    def _step_core(self, state: State, action: torch.Tensor, scale: torch.Tensor, sample: bool) -> State:
        raise NotImplementedError

    def _core_features(self, state: State) -> torch.Tensor:
        raise NotImplementedError

    def observe(self, obs: dict[str, torch.Tensor], sample: bool = False) -> State:
        """State of a real chain from its encoder latents (dict of (B, latent_dim))."""
        state = self._observe_core(obs, sample)
        state.update({f"lat/{k}": obs[k] for k in self.latent_keys})
        ref = obs[self.latent_keys[0]]
        state["task"] = obs["task"] if "task" in obs else ref.new_zeros(ref.shape[0], self.task_dim)
        return state

    def step(self, state: State, action: torch.Tensor, scale: torch.Tensor, sample: bool = False) -> State:
        """Apply one edit: action (B, A), scale weights (B, 3) -> the next (prior) state."""
        new = self._step_core(state, action, scale, sample)
        core = self._core_features(new)
        for k in self.latent_keys:
            z = state[f"lat/{k}"]
            new[f"lat/{k}"] = F.normalize(z + self.latent_step[k](torch.cat([core, z, action], -1)), dim=-1)
        new["task"] = state["task"]
        return new

    def features(self, state: State) -> torch.Tensor:
        """(B, feature_dim): the core features, the predicted latents and the task vector, read by the heads."""
        return torch.cat([self._core_features(state), *(state[f"lat/{k}"] for k in self.latent_keys),
                          state["task"]], -1)

    def kl(self, state: State, obs: dict[str, torch.Tensor],
           free_nats: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Balanced KL (dyn, rep), each (B,), between the posterior given the real chain's latents and
        the state's prior; zeros for deterministic models.
        """
        zero = next(iter(obs.values())).new_zeros(next(iter(obs.values())).shape[0])
        return zero, zero

    def imagine(self, state: State, actions: torch.Tensor, scales: torch.Tensor, sample: bool = False) -> list[State]:
        """Roll T edits: actions (B, T, A), scales (B, T, 3) -> T states (the start not included)."""
        out = []
        for t in range(actions.shape[1]):
            state = self.step(state, actions[:, t], scales[:, t], sample)
            out.append(state)
        return out

    def reward(self, state: State) -> torch.Tensor:
        """(B,) predicted reward (ensemble mean)."""
        return self.heads.reward(self.features(state))[0]

    def uncertainty(self, state: State) -> torch.Tensor:
        """(B,) ensemble spread of the predicted reward."""
        return self.heads.reward(self.features(state))[1]

    def predict_latents(self, state: State) -> dict[str, torch.Tensor]:
        """The encoder latents this state predicts for its chain (unit vectors), one per ``latent_keys``."""
        return {k: state[f"lat/{k}"] for k in self.latent_keys}

    def predict_response(self, state: State) -> torch.Tensor:
        return self.heads.predict_response(self.features(state))

    def effect(self, parent: State, child: State,
               extra: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted change from ``parent`` to ``child``: mean (B, 2) and ensemble std (B, 2), columns in
        ``heads.EFFECTS`` order (accuracy, dense). ``extra`` (B, X): what the effect head reads of the edit
        beside the two states, when it was built to (``Heads(effect_extra=X)``).
        """
        return self.heads.effect(self.features(parent), self.features(child), extra)


def _gaussian(stats: torch.Tensor, min_std: float) -> tuple[torch.Tensor, torch.Tensor]:
    mean, raw = stats.chunk(2, -1)
    return mean, F.softplus(raw) + min_std


def _kl(mean_q: torch.Tensor, std_q: torch.Tensor, mean_p: torch.Tensor, std_p: torch.Tensor) -> torch.Tensor:
    """KL(N(q) || N(p)) summed over the last dim."""
    return (torch.log(std_p / std_q) + (std_q**2 + (mean_q - mean_p) ** 2) / (2 * std_p**2) - 0.5).sum(-1)


class RSSM(WorldModelNet):
    """Recurrent state-space model over named levels (top first); one level = a flat RSSM.

    Args:
        latent_dim: encoder latent size (observations and predicted latents).
        action_dim: edit embedding size.
        levels: level names, top first; each is observed through the encoder latent of that name.
            ``("instruction", "segment", "token")`` is the hierarchy; one level is flat.
        deter_dim: GRU state size per level.
        stoch_dim: stochastic latent size per level.
        hidden_dim: MLP width.
        min_std: floor of the stochastic latent's standard deviation.
        heads: keyword arguments of ``Heads`` (members, bins, hidden_dim, response_dim).
        task_dim: size of the task vector the heads read (0: no task conditioning).
    """

    def __init__(self, latent_dim: int, action_dim: int, levels: tuple[str, ...] = LEVELS, deter_dim: int = 128,
                 stoch_dim: int = 32, hidden_dim: int = 256, min_std: float = 0.1, heads: dict | None = None,
                 task_dim: int = 0) -> None:
        keys = LATENT_KEYS if len(levels) > 1 else tuple(levels)
        super().__init__((deter_dim + stoch_dim) * len(levels), latent_dim, action_dim, hidden_dim, heads, keys,
                         task_dim)
        self.levels, self.min_std = tuple(levels), min_std
        self.summary_dim = deter_dim // 2
        self.init = nn.ModuleDict({lv: nn.Linear(latent_dim, deter_dim) for lv in levels})
        self.post = nn.ModuleDict({lv: mlp(deter_dim + latent_dim, hidden_dim, 2 * stoch_dim) for lv in levels})
        self.prior = nn.ModuleDict({lv: mlp(deter_dim, hidden_dim, 2 * stoch_dim) for lv in levels})
        self.cell = nn.ModuleDict({lv: nn.GRUCell(stoch_dim + action_dim + self.summary_dim, deter_dim)
                                   for lv in levels})
        self.up = nn.ModuleDict({lv: nn.Linear(deter_dim, self.summary_dim) for lv in levels})
        self.down = nn.ModuleDict({lv: mlp(2 * deter_dim, hidden_dim, deter_dim) for lv in levels[1:]})

    def _scale_weight(self, level: str, scale: torch.Tensor) -> torch.Tensor:
        """(B, 1): how much of the edit enters this level (all of it for a flat model)."""
        if len(self.levels) == 1:
            return scale.sum(-1, keepdim=True)
        return scale[:, SCALES.index(level)].unsqueeze(-1)

    def _sample(self, mean: torch.Tensor, std: torch.Tensor, sample: bool) -> torch.Tensor:
        return mean + std * torch.randn_like(std) if sample else mean

    def _observe_core(self, obs: dict[str, torch.Tensor], sample: bool) -> State:
        state: State = {}
        for lv in self.levels:
            h = torch.tanh(self.init[lv](obs[lv]))  # (B, deter)
            mean, std = _gaussian(self.post[lv](torch.cat([h, obs[lv]], -1)), self.min_std)
            state[f"{lv}/h"], state[f"{lv}/s"] = h, self._sample(mean, std, sample)
            state[f"{lv}/mean"], state[f"{lv}/std"] = mean, std
        return state

    def _step_core(self, state: State, action: torch.Tensor, scale: torch.Tensor, sample: bool) -> State:
        new_h: dict[str, torch.Tensor] = {}
        summary = action.new_zeros(action.shape[0], self.summary_dim)  # nothing below the lowest level
        for lv in reversed(self.levels):  # bottom-up: token -> segment -> instruction
            inp = torch.cat([state[f"{lv}/s"], self._scale_weight(lv, scale) * action, summary], -1)
            new_h[lv] = self.cell[lv](inp, state[f"{lv}/h"])
            summary = self.up[lv](new_h[lv])
        out: State = {}
        parent = None
        for lv in self.levels:  # top-down: each level corrected by its parent's new state
            h = new_h[lv] if parent is None else new_h[lv] + self.down[lv](torch.cat([new_h[lv], parent], -1))
            mean, std = _gaussian(self.prior[lv](h), self.min_std)
            out[f"{lv}/h"], out[f"{lv}/s"] = h, self._sample(mean, std, sample)
            out[f"{lv}/mean"], out[f"{lv}/std"] = mean, std
            parent = h
        return out

    def _core_features(self, state: State) -> torch.Tensor:
        return torch.cat([t for lv in self.levels for t in (state[f"{lv}/h"], state[f"{lv}/s"])], -1)

    def kl(self, state: State, obs: dict[str, torch.Tensor],
           free_nats: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """DreamerV3's balanced KL with free nats, summed over levels."""
        dyn = rep = 0.0
        for lv in self.levels:
            mq, sq = _gaussian(self.post[lv](torch.cat([state[f"{lv}/h"], obs[lv]], -1)), self.min_std)
            mp, sp = state[f"{lv}/mean"], state[f"{lv}/std"]
            dyn = dyn + _kl(mq.detach(), sq.detach(), mp, sp).clamp_min(free_nats)
            rep = rep + _kl(mq, sq, mp.detach(), sp.detach()).clamp_min(free_nats)
        return dyn, rep  # type: ignore[return-value]


class HierarchicalRSSM(RSSM):
    """The TaP world model: an RSSM per level, instruction > segment > token (see the module docstring)."""

    def __init__(self, latent_dim: int, action_dim: int, deter_dim: int = 128, stoch_dim: int = 32,
                 hidden_dim: int = 256, min_std: float = 0.1, heads: dict | None = None, task_dim: int = 0) -> None:
        super().__init__(latent_dim, action_dim, LEVELS, deter_dim, stoch_dim, hidden_dim, min_std, heads, task_dim)
