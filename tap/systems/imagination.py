"""The imagination policy: an actor-critic trained entirely inside the frozen world model (Dreamer-style).

From real chains of the triples data, it proposes K candidate edits per chain (the planner's menu),
then imagines H-step rollouts in which the actor picks one candidate per step and the world model
predicts the reward (minus an uncertainty penalty). The critic learns lambda-returns; the actor learns
by REINFORCE on normalised advantages with an entropy bonus (DreamerV3 for discrete actions). It never
calls the LLM. Its scores rank a search's candidates with ``plan.py --checkpoint checkpoints/policy --preset model
--set ranker=policy compose=0 compose_hedge=false adapt=0``.

Named loss terms, each scaled by ``loss_scales``: ``actor`` (policy gradient), ``entropy`` (negative
entropy), ``critic`` (squared error to the lambda-return), ``slow`` (pull towards a slow EMA critic).
"""

from __future__ import annotations

import copy
import random
from functools import lru_cache

import torch
from torch.distributions import Categorical

from tap.chains import edit_space
from tap.chains.chain import Chain
from tap.chains.edits import Edit
from tap.chains.render import chain_views
from tap.errors import unknown_loss_terms
from tap.metrics import GroupedRankAgreement
from tap.models import State
from tap.models.actor_critic import Actor, Critic
from tap.systems.base import TapSystem
from tap.systems.batch import task_ids
from tap.systems.checkpoints import init_hparams, own_hyperparameters, read_checkpoint
from tap.systems.tensorboard import LatentProjector
from tap.systems.world_model import WorldModel
from tap.tasks import task_slug

POLICY_LOSSES = ("actor", "entropy", "critic", "slow")
DEFAULT_SCALES = {"actor": 1.0, "entropy": 3e-3, "critic": 1.0, "slow": 1.0}


@lru_cache(maxsize=64)
def _space(task: str, seed: int):
    from tap.tasks import load_task

    return edit_space(load_task(task, seed=seed))


class ImaginationPolicy(TapSystem):
    """Actor-critic over candidate edits, trained on imagined rollouts of a frozen world model.

    Args:
        world_model_checkpoint: a ``WorldModel`` checkpoint (file or run folder). (A ``WorldModel``'s own
            ``world_model`` argument names its variant.)
        world_model_hparams: filled in from ``world_model_checkpoint`` (with its weights in this checkpoint), so the
            policy's checkpoint is all a planner needs; leave unset.
        world_model_data: the world model's training data settings, filled in likewise (cost accounting).
        candidates: candidate edits proposed per start chain (K).
        rollout_horizon: imagined edits per rollout (H).
        discount: per-step discount.
        lambda_: lambda of the lambda-returns.
        uncertainty_penalty: weight of the reward ensemble's spread subtracted from each imagined reward.
        hidden_dim: actor and critic width.
        return_floor: advantages are divided by max(floor, EMA of the 5-95 % return range) (DreamerV3 uses 1;
            rewards here are accuracies in [0, 1]).
        slow_critic: EMA rate of the slow critic.
        loss_scales: weight per term (``POLICY_LOSSES``); missing terms take ``DEFAULT_SCALES``.
        actor_lr: AdamW learning rate of the actor.
        critic_lr: AdamW learning rate of the critic.
        menu_seed: seeds the candidate menus (training draws change per step; validation's are fixed).
    """

    #: the loss terms ``loss_scales`` may name (checked by the CLI before anything is built)
    LOSS_TERMS: tuple[str, ...] = POLICY_LOSSES

    #: constructor arguments renamed since older checkpoints were saved: old name -> new name
    RENAMED_HPARAMS = {"world_model": "world_model_checkpoint"}

    def __init__(self, world_model_checkpoint: str = "checkpoints/world_model", world_model_hparams: dict | None = None,
                 world_model_data: dict | None = None, candidates: int = 12, rollout_horizon: int = 5,
                 discount: float = 0.9, lambda_: float = 0.95, uncertainty_penalty: float = 0.5, hidden_dim: int = 256,
                 return_floor: float = 0.1, slow_critic: float = 0.02, loss_scales: dict[str, float] | None = None,
                 actor_lr: float = 1e-4, critic_lr: float = 3e-4, menu_seed: int = 0) -> None:
        super().__init__()
        unknown = set(loss_scales or {}) - set(POLICY_LOSSES)
        if unknown:
            raise unknown_loss_terms(unknown, POLICY_LOSSES)
        if candidates < 2 or rollout_horizon < 1:
            raise ValueError(f"candidates ({candidates}) must be >= 2 and rollout_horizon ({rollout_horizon}) >= 1.")
        self.save_hyperparameters()
        ckpt = None
        if world_model_hparams is None:
            _, ckpt = read_checkpoint(world_model_checkpoint, WorldModel.__name__)
            world_model_hparams = init_hparams(ckpt)
            data = {k: v for k, v in (ckpt.get("datamodule_hyper_parameters") or {}).items() if not k.startswith("_")}
            self.hparams["world_model_hparams"] = world_model_hparams
            self.hparams["world_model_data"] = data
        self.loss_scales = DEFAULT_SCALES | dict(loss_scales or {})
        with own_hyperparameters():
            self.world_model = WorldModel(**world_model_hparams)
        if ckpt is not None:
            self.world_model.restore(ckpt)
        self.world_model.requires_grad_(False)
        wm = self.world_model
        self.actor = Actor(wm.feature_dim, wm.action_dim, hidden_dim)
        self.critic = Critic(wm.feature_dim, hidden_dim)
        self.slow = copy.deepcopy(self.critic).requires_grad_(False)
        self.register_buffer("return_scale", torch.tensor(1.0))
        self.edit_rank = torch.nn.ModuleDict({s: GroupedRankAgreement() for s in ("val", "test")})
        self.returns: dict[str, list[torch.Tensor]] = {}
        self._tasks: dict[str, int] = {}
        self.projector = LatentProjector(["task", "value"])

    def train(self, mode: bool = True) -> ImaginationPolicy:
        super().train(mode)
        self.world_model.eval()  # frozen
        return self

    # ---- used by the planner ----------------------------------------------------------------
    def actor_logits(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Scores (B, K) of candidates ``actions`` (B, K, A) at world-model ``features`` (B, F)."""
        return self.actor(features, actions)

    @classmethod
    def from_checkpoint(cls, path) -> ImaginationPolicy:
        model = cls._load(path)
        model.requires_grad_(False)
        return model.eval()

    # ---- imagination ------------------------------------------------------------------------
    def _menus(self, batch: dict, rng: random.Random) -> tuple[State, torch.Tensor, torch.Tensor, torch.Tensor, list]:
        """Start states of the windows' first chains and their candidate menus.

        Returns the state (batch B), candidate actions (B, K, A), scales (B, K, 3), mask (B, K), and the edits.
        """
        wm, K = self.world_model, self.hparams.candidates
        chains = [Chain.from_json(js[0]) for js in batch["chain_json"]]
        menus = [_space(t, self.hparams.menu_seed).propose(c, K, rng) for t, c in zip(batch["task"], chains)]
        with torch.no_grad():
            lat = wm.encoder(batch["context"], [chain_views(c) for c in chains])
            lat["task"] = wm.context_vectors(batch.get("task_pairs"), chains)
            state = wm.observe(lat)
            flat_a, flat_s = wm.embed_edits([e for m in menus for e in m])  # (N, A), (N, 3)
        B = len(chains)
        actions = torch.zeros(B, K, flat_a.shape[-1], device=self.device)
        scales = torch.zeros(B, K, flat_s.shape[-1], device=self.device)
        mask = torch.zeros(B, K, dtype=torch.bool, device=self.device)
        i = 0
        for b, m in enumerate(menus):
            n = len(m)
            actions[b, :n], scales[b, :n], mask[b, :n] = flat_a[i : i + n], flat_s[i : i + n], True
            i += n
        return state, actions, scales, mask, menus

    def _reward(self, state: State) -> torch.Tensor:
        return self.world_model.planning_reward(state, self.hparams.uncertainty_penalty)

    def imagine(self, state: State, actions: torch.Tensor, scales: torch.Tensor, mask: torch.Tensor,
                mode: str = "sample") -> dict[str, torch.Tensor]:
        """Roll H steps choosing a candidate per step (``sample``, ``greedy`` or ``random``).

        Returns features (H+1, B, F), rewards (H, B), log-probs (H, B) and entropies (H, B).
        """
        wm, B = self.world_model, actions.shape[0]
        rows = torch.arange(B, device=self.device)
        feats, rewards, logps, ents = [], [], [], []
        for _ in range(self.hparams.rollout_horizon):
            with torch.no_grad():
                f = wm.features(state)
            logits = self.actor(f, actions).masked_fill(~mask, float("-inf"))  # (B, K)
            dist = Categorical(logits=logits)
            if mode == "greedy":
                idx = logits.argmax(-1)
            elif mode == "random":
                idx = Categorical(probs=mask.float()).sample()
            else:
                idx = dist.sample()
            with torch.no_grad():
                state = wm.step(state, actions[rows, idx], scales[rows, idx])
                rewards.append(self._reward(state))
            feats.append(f)
            logps.append(dist.log_prob(idx))
            ents.append(dist.entropy())
        with torch.no_grad():
            feats.append(wm.features(state))
        return {"feat": torch.stack(feats), "reward": torch.stack(rewards), "logp": torch.stack(logps),
                "entropy": torch.stack(ents)}

    def lambda_returns(self, reward: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """Lambda-returns (H, B) from rewards (H, B) and values (H+1, B), bootstrapped from the last value."""
        g, lam = self.hparams.discount, self.hparams.lambda_
        out, nxt = [], value[-1]
        for t in reversed(range(reward.shape[0])):
            nxt = reward[t] + g * ((1 - lam) * value[t + 1] + lam * nxt)
            out.append(nxt)
        return torch.stack(out[::-1])

    def discounted(self, reward: torch.Tensor) -> torch.Tensor:
        """(B,) discounted sum of imagined rewards (H, B)."""
        g = self.hparams.discount ** torch.arange(reward.shape[0], device=reward.device, dtype=reward.dtype)
        return (reward * g.unsqueeze(-1)).sum(0)

    # ---- training ---------------------------------------------------------------------------
    def _rng(self, stage: str, batch_idx: int) -> random.Random:
        step = self.global_step if stage == "train" else 0  # validation menus stay fixed across epochs
        return random.Random(f"policy:{self.hparams.menu_seed}:{stage}:{step}:{batch_idx}")

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        batch = batch["windows"] if "windows" in batch else batch  # sibling groups are the world model's
        state, actions, scales, mask, _ = self._menus(batch, self._rng("train", batch_idx))
        roll = self.imagine(state, actions, scales, mask, "sample")
        value = self.critic(roll["feat"])  # (H+1, B)
        with torch.no_grad():
            ret = self.lambda_returns(roll["reward"], self.critic(roll["feat"]))  # (H, B)
            lo, hi = torch.quantile(ret.flatten(), torch.tensor([0.05, 0.95], device=ret.device))
            self.return_scale.mul_(0.99).add_(0.01 * (hi - lo))
            adv = (ret - value[:-1]) / torch.clamp(self.return_scale, min=self.hparams.return_floor)
            slow = self.slow(roll["feat"][:-1])
        terms = {
            "actor": -(roll["logp"] * adv).mean(),
            "entropy": -roll["entropy"].mean(),
            "critic": 0.5 * ((value[:-1] - ret) ** 2).mean(),
            "slow": 0.5 * ((value[:-1] - slow) ** 2).mean(),
        }
        loss = sum(self.loss_scales[k] * v for k, v in terms.items())
        B = actions.shape[0]
        self.log_dict({f"train/loss/{k}": v for k, v in terms.items()}, batch_size=B, on_step=True, on_epoch=True)
        self.log_dict({"train/loss": loss, "train/return": self.discounted(roll["reward"]).mean(),
                       "train/entropy": roll["entropy"].mean(), "train/return_scale": self.return_scale},
                      batch_size=B, on_step=True, on_epoch=True, prog_bar=False)
        return loss  # type: ignore[return-value]

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        with torch.no_grad():
            for s, c in zip(self.slow.parameters(), self.critic.parameters()):
                s.lerp_(c, self.hparams.slow_critic)

    def _shared_step(self, batch: dict, stage: str) -> None:
        """Evaluation: the greedy policy's imagined return against random choices from the same menus, and
        how the actor ranks the real edits of held-out trajectories against their measured reward change.
        """
        idx = len(self.returns.get(stage, []))  # the batch's index in this evaluation epoch
        state, actions, scales, mask, _ = self._menus(batch, self._rng(stage, idx))
        with torch.random.fork_rng():
            torch.manual_seed(idx)  # the same random picks every epoch
            greedy = self.discounted(self.imagine(state, actions, scales, mask, "greedy")["reward"])
            rand = self.discounted(self.imagine(state, actions, scales, mask, "random")["reward"])
        self.returns.setdefault(stage, []).append(torch.stack([greedy, rand]))
        wm = self.world_model
        with torch.no_grad():
            real_a, _ = wm.embed_edits([Edit.from_json(row[0]) for row in batch["edit_json"]])  # (B, A)
            f = wm.features(state)
            score = self.actor(f, real_a.unsqueeze(1))[:, 0]
        reward = batch["reward"].to(self.device)
        group = task_ids(batch["task"], self._tasks).to(self.device)
        self.edit_rank[stage].update(score, reward[:, 1] - reward[:, 0], group)
        self.projector.add(state["lat/chain"], [[task_slug(t), f"{float(v):.3f}"]
                                                for t, v in zip(batch["task"], self.critic(f))])

    def _end_eval(self, stage: str) -> None:
        if self.returns.get(stage):
            r = torch.cat(self.returns.pop(stage), -1)  # (2, N)
            self.log(f"{stage}/return", r[0].mean(), prog_bar=True)
            self.log(f"{stage}/return_random", r[1].mean())
            self.log(f"{stage}/return_gain", (r[0] - r[1]).mean())
        metric = self.edit_rank[stage]
        if metric.preds:
            names = {i: task_slug(t) for t, i in self._tasks.items()}
            for key, val in metric.compute().items():
                stat, _, gid = key.partition("/")
                if stat == "mae":  # actor logits and reward changes live on different scales: ranks only
                    continue
                self.log(f"{stage}/edit/{stat}" + (f"/{names.get(int(gid), gid)}" if gid else ""), val)
            metric.reset()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW([{"params": self.actor.parameters(), "lr": self.hparams.actor_lr},
                                  {"params": self.critic.parameters(), "lr": self.hparams.critic_lr}],
                                 weight_decay=1e-4)
