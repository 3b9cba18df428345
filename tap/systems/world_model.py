"""The world model: predicts what an edit does to the frozen LLM's responses, without calling it.

Wires a frozen ``ContrastiveEncoder`` (observations and rollout targets), an ``EditEmbedder`` and a
world-model network chosen in config (``hierarchical`` TaP model, or the ``flat`` / ``demo``
references). Training rolls the network open-loop from every chain of a window through the real
edits that followed and holds each imagined state against the encoder's latents of the real next
chain and the LLM's measured response. Named loss terms, each scaled by ``loss_scales``:

- ``latent``: 1 - cosine between predicted and real latents (instruction, segment, token and chain for
  the hierarchy; the chain latent for the references), on imagined chains;
- ``reward``: two-hot cross-entropy of the reward ensemble (each member on a bootstrap mask);
- ``response``: squared error of the response summary (accuracy, dense, compliance, answer shape);
- ``delta``: squared error of the predicted reward *change* since the observed start chain;
- ``kl_dyn`` / ``kl_rep``: DreamerV3's balanced KL between posterior and prior, with free nats;
- ``effect``: squared error of the effect head's predicted change (accuracy, dense) of one edit, on
  the windows' one-step edits and on sibling edits (each ensemble member on a bootstrap mask; a sibling
  group where every edit changed accuracy alike weighs ``flat_weight``);
- ``rank`` / ``rank_dense``: RankNet's pairwise loss over each sibling group (edits of one parent chain
  measured on the same examples) on the change of accuracy / of the dense reward: the order a search
  needs.

The model sees the task as ``task_pairs`` train input/output pairs (``TaskEncoder``), so it predicts
on a task it was never trained on with nothing collected there, and (``chain_stats``) the observed
chain's structure as a few numbers (``tap.chains.render.chain_stats``: demonstrations, steps, ...),
which a frozen text encoder represents poorly; both ride along the state as its context. With ``relevance``, the
effect head also reads how close the parent's prompt is to the task's pairs and how much closer the edit brings it
(``relevance_inputs``: computed from the real chains, so one-step effects of real edits only). Its effect
uncertainty is the ensemble spread times ``interval_scale``, a split-conformal factor fitted on every validation epoch
so that ``mean ± 1.28 * std`` is an 80 % interval on the validation edits; held-out tasks report how
well that carries over (``test/calibration/*``). The non-learned prior (the mean change of each edit
operation over the training edits, ``op_prior``) is scored on the same sibling groups, next to it.

Planners, the imagination policy and online refinement use only the narrow interface:
``encode_chains``, ``embed_edits``, ``observe``, ``step`` / ``imagine``, ``features``, ``reward``,
``uncertainty``, ``planning_reward``, ``edit_effect``, ``refinable_parameters`` (and ``from_checkpoint``
to load one); nothing outside this system and ``tap.models`` touches ``.net``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric

from tap.chains.chain import Chain
from tap.chains.edits import OP_IDS, SCALES, Edit
from tap.chains.render import CHAIN_STATS, chain_stats, chain_views, prompt_text
from tap.collection.schema import RESPONSE_FEATURES, SCALE_IDS, payload_text
from tap.errors import TapError, unknown_loss_terms
from tap.losses.ranking import pairwise_ranking_loss
from tap.metrics import GroupedRankAgreement, IntervalCalibration, SelectionGain, SiblingRankAgreement
from tap.models import WORLD_MODELS, EditEmbedder, State, TaskEncoder, WorldModelNet
from tap.models.encoder import LATENT_KEYS
from tap.systems.base import TapSystem
from tap.systems.batch import task_ids, window_views
from tap.systems.checkpoints import init_hparams, own_hyperparameters, read_checkpoint
from tap.systems.encoder import ContrastiveEncoder
from tap.systems.tensorboard import LatentProjector, log_scatter
from tap.tasks import task_slug

WM_LOSSES = ("latent", "reward", "response", "delta", "kl_dyn", "kl_rep", "effect", "rank", "rank_dense")
DEFAULT_SCALES = {"latent": 1.0, "reward": 1.0, "response": 1.0, "delta": 1.0, "kl_dyn": 0.5, "kl_rep": 0.1,
                  "effect": 1.0, "rank": 1.0, "rank_dense": 0.5}
#: what ``relevance_inputs`` gives the effect head per edit, in order; the change is multiplied by
#: ``RELEVANCE_SCALE`` (fixed before any fit, not tuned)
RELEVANCE_INPUTS = ("parent", "change")
RELEVANCE_SCALE = 10.0
RANKED = ("reward", "dense", "reward_observed", "edit", "uncertainty")
#: read-outs scored on sibling groups (model and non-learned prior) -> their names in the logs: the mean
#: within-group Spearman, the selection gain, and the Spearman pooled over a task's edits (accuracy, dense);
#: the ``*_half`` ones judge on the second half of the examples only, where the noise ceiling (a second real
#: evaluation: the first half's changes, logged under ``ceiling/``) is judged too
SIBLING_LOG_NAMES = {"sibling": "sibling", "gain": "selection", "edit": "sibling_edit",
                     "edit_dense": "sibling_edit_dense", "sibling_half": "sibling_half",
                     "edit_half": "sibling_edit_half"}
HALF_KINDS = ("sibling_half", "edit_half")


def _encoder_spec(encoder: str) -> tuple[dict, dict | None]:
    """Encoder hyperparameters (and its checkpoint) from a checkpoint, or a fresh frozen one by backbone name."""
    if encoder in ("hash", "minilm"):
        return {"backbone": encoder, "lora_rank": 0}, None
    _, ckpt = read_checkpoint(encoder, ContrastiveEncoder.__name__)
    return init_hparams(ckpt), ckpt


class WorldModel(TapSystem):
    """Frozen encoder + edit embedder + world-model network, trained on multi-step rollouts.

    Args:
        encoder: a ``ContrastiveEncoder`` checkpoint (file or run folder), or ``hash`` / ``minilm`` for
            an untrained frozen encoder (tests, debug, and the "no contrastive training" ablation).
        encoder_hparams: filled in from ``encoder`` when the model is built, so that a world-model
            checkpoint rebuilds its encoder without the encoder's file; leave unset.
        world_model: ``hierarchical`` (TaP), ``flat`` (one RSSM level) or ``demo`` (the authors' demo).
        action_dim: edit embedding size.
        deter_dim: GRU state size per level.
        stoch_dim: stochastic latent size per level.
        hidden_dim: MLP width.
        ensemble: reward heads in the ensemble (their spread is the uncertainty).
        bins: two-hot reward bins.
        free_nats: KL free nats (DreamerV3).
        bootstrap: fraction of the batch each reward and effect head trains on.
        task_dim: size of the task vector from the task's train pairs (0: no task conditioning).
        chain_stats: give the heads the observed chain's structure (``chain_stats``) as well.
        interval: nominal coverage of the effect's predictive interval (calibrated on validation).
        effect_prior: the effect head predicts the accuracy change *beyond* the non-learned prior (the mean
            change of the edit's operation over the training edits, fixed before training): it starts from
            the prior and learns how the chain and the task correct it.
        flat_weight: weight of the sibling effect loss on *flat* groups, where every sibling changed
            accuracy alike (mostly: nothing changed). A ranking matters only where something changes; on a
            pool of tasks the LLM cannot do, flat groups dominate and teach the head to cancel the
            operations' differences (1: every group alike; 0: only groups with an order).
        relevance: the effect head also reads, per edit, ``r(parent)`` and ``RELEVANCE_SCALE · (r(child) −
            r(parent))``, ``r`` the cosine between the text tower's embedding of a chain's prompt and the unit mean
            of the task pairs' embeddings (``relevance_inputs``): whether an edit makes the prompt read more like
            the task, known before any evaluation. Its effects are then read of real edits only (siblings, the
            windows' one-step edits, a search's candidates applied to the real chain).
        loss_scales: weight per loss term (``WM_LOSSES``); missing terms take ``DEFAULT_SCALES``.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
    """

    #: the loss terms ``loss_scales`` may name (checked by the CLI before anything is built)
    LOSS_TERMS: tuple[str, ...] = WM_LOSSES

    def __init__(self, encoder: str = "checkpoints/encoder", encoder_hparams: dict | None = None,
                 world_model: Literal["hierarchical", "flat", "demo"] = "hierarchical", action_dim: int = 64,
                 deter_dim: int = 128, stoch_dim: int = 32, hidden_dim: int = 256, ensemble: int = 5,
                 bins: int = 41, free_nats: float = 1.0, bootstrap: float = 0.8, task_dim: int = 32,
                 chain_stats: bool = True, interval: float = 0.8, effect_prior: bool = False,
                 flat_weight: float = 1.0, relevance: bool = False, loss_scales: dict[str, float] | None = None,
                 lr: float = 3e-4, weight_decay: float = 1e-4) -> None:
        super().__init__()
        unknown = set(loss_scales or {}) - set(WM_LOSSES)
        if unknown:
            raise unknown_loss_terms(unknown, WM_LOSSES)
        if not 0 <= flat_weight <= 1:
            raise ValueError(f"flat_weight must be in [0, 1] (the weight of flat sibling groups), got {flat_weight}.")
        if world_model not in WORLD_MODELS:
            raise ValueError(f"unknown world_model {world_model!r}; choose one of {list(WORLD_MODELS)}.")
        self.save_hyperparameters()
        encoder_ckpt = None
        if encoder_hparams is None:
            encoder_hparams, encoder_ckpt = _encoder_spec(encoder)
            self.hparams["encoder_hparams"] = encoder_hparams  # checkpoints rebuild the encoder without its file
        self.loss_scales = DEFAULT_SCALES | dict(loss_scales or {})
        with own_hyperparameters():
            self.encoder = ContrastiveEncoder(**encoder_hparams)
        if encoder_ckpt is not None:
            self.encoder.restore(encoder_ckpt)
        self.encoder.freeze_encoder()
        latent_dim = self.encoder.hparams.latent_dim
        text_dim = self.encoder.net.backbone.dim
        self.actions = EditEmbedder(text_dim, action_dim)
        self.task_encoder = TaskEncoder(text_dim, task_dim, hidden_dim) if task_dim else None
        heads = {"hidden_dim": hidden_dim, "members": ensemble, "bins": bins,
                 "effect_extra": len(RELEVANCE_INPUTS) if relevance else 0}
        context_dim = task_dim + (len(CHAIN_STATS) if chain_stats else 0)  # the state's "task" slot: both
        if world_model == "demo":
            self.net: WorldModelNet = WORLD_MODELS[world_model](latent_dim, action_dim, hidden_dim, heads,
                                                                task_dim=context_dim)
        else:
            self.net = WORLD_MODELS[world_model](latent_dim, action_dim, deter_dim, stoch_dim, hidden_dim, heads=heads,
                                                 task_dim=context_dim)
        self.register_buffer("interval_scale", torch.ones(()))  # split-conformal factor of the effect's std
        # the non-learned prior: sum and count of the measured accuracy change per edit operation in training
        self.register_buffer("op_delta", torch.zeros(2, len(OP_IDS)))
        self.ranked = torch.nn.ModuleDict({s: torch.nn.ModuleDict({k: GroupedRankAgreement() for k in RANKED})
                                           for s in ("val", "test")})
        half = {"sibling_half": SiblingRankAgreement, "edit_half": GroupedRankAgreement}
        self.sibling_metrics = torch.nn.ModuleDict({
            f"{s}_{who}": torch.nn.ModuleDict(({} if who == "ceiling" else {
                "sibling": SiblingRankAgreement(), "gain": SelectionGain(), "edit": GroupedRankAgreement(),
                "edit_dense": GroupedRankAgreement()}) | {k: m() for k, m in half.items()})
            for s in ("val", "test") for who in ("model", "prior", "ceiling")})
        self.calibration = torch.nn.ModuleDict({s: IntervalCalibration(interval) for s in ("val", "test")})
        self._groups_seen = 0  # sibling groups scored in this evaluation epoch (their ids stay unique)
        self._prior_fixed = False  # True once the prior was counted from the whole training split
        self.horizon_error = torch.nn.ModuleDict()  # "<stage>_<model|copy>_<k>" -> MeanMetric, made on first use
        self._tasks: dict[str, int] = {}
        self.projector = LatentProjector(["task", "reward", "predicted_reward"])

    def on_fit_start(self) -> None:
        """Count the non-learned prior once from the whole training split (every edit once), before any
        step, so that an effect head trained beyond it (``effect_prior``) sees one fixed offset.
        """
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "op_effects"):
            return  # counted batch by batch during training instead
        ops, delta = dm.op_effects("train")
        self.op_delta.zero_()
        self._count_ops(ops, delta)
        self._prior_fixed = True

    def train(self, mode: bool = True) -> WorldModel:
        super().train(mode)
        self.encoder.eval()  # frozen: no dropout, and its text vectors stay memoised
        return self

    # ---- the planner-facing interface -------------------------------------------------------
    @torch.no_grad()
    def encode_chains(self, chains: list[Chain], context: str,
                      pairs: list[str] | None = None) -> dict[str, torch.Tensor]:
        """Encoder latents of real chains of one task, dict of (N, latent_dim), and their context ``task``
        (``context_vectors``: the task from ``pairs`` (``task_pair_texts``; none: the empty task) and each
        chain's structure).
        """
        lat = self.encoder([context] * len(chains), [chain_views(c) for c in chains])
        lat["task"] = self.context_vectors([list(pairs or [])] * len(chains), chains)
        return lat  # type: ignore[return-value]

    def context_vectors(self, pairs: list[list[str]] | None, chains: list[Chain]) -> torch.Tensor:
        """What an observed state carries besides its latents: (N, task_dim [+ len(CHAIN_STATS)]), the task
        vector of each row's pairs and, with ``chain_stats``, the structure of its chain.
        """
        task = self.task_vectors(pairs, len(chains))
        if not self.hparams.chain_stats:
            return task
        stats = torch.tensor([chain_stats(c) for c in chains], dtype=task.dtype, device=self.device)
        return torch.cat([task, stats.view(len(chains), len(CHAIN_STATS))], -1)

    def task_vectors(self, pairs: list[list[str]] | None, n: int) -> torch.Tensor:
        """(n, task_dim) task vectors from each row's train pairs (``task_pair_texts``); zeros-in for a row
        without pairs (and ``pairs=None``: every row). (n, 0) without task conditioning.
        """
        if self.task_encoder is None:
            return torch.zeros(n, 0, device=self.device)
        pairs = pairs if pairs is not None else [[] for _ in range(n)]
        texts = [t for row in pairs for t in row]
        owner = torch.tensor([i for i, row in enumerate(pairs) for _ in row], dtype=torch.long, device=self.device)
        with torch.no_grad():
            vec = (self.encoder.net.embed_text(texts) if texts
                   else torch.zeros(0, self.encoder.net.backbone.dim, device=self.device))
        return self.task_encoder(vec, owner, n)

    def relevance_inputs(self, pairs: list[list[str]] | None, parents: list[Chain],
                         children: list[Chain]) -> torch.Tensor | None:
        """(N, 2) what the effect head reads of each edit with ``relevance`` (``RELEVANCE_INPUTS``): ``r(parent)``
        and ``RELEVANCE_SCALE · (r(child) − r(parent))``, ``r`` the frozen text tower's ``task_closeness`` of a
        chain's prompt (a row without pairs reads zeros, like the task vector). None without ``relevance``.
        """
        if not self.hparams.get("relevance"):
            return None
        if len(children) != len(parents):
            raise ValueError(f"relevance_inputs: {len(parents)} parents but {len(children)} children.")
        pairs = pairs if pairs is not None else [[] for _ in parents]
        with torch.no_grad():
            r = task_closeness(lambda t: self.encoder.net.embed_text(t).float(), pairs, [*parents, *children])
        r = r.view(2, len(parents))  # parents, children
        return torch.stack([r[0], RELEVANCE_SCALE * (r[1] - r[0])], -1).to(self.device)

    def embed_edits(self, edits: list[Edit]) -> tuple[torch.Tensor, torch.Tensor]:
        """Edits -> action embeddings (N, action_dim) and one-hot scale weights (N, 3)."""
        scale = torch.tensor([SCALE_IDS[e.scale] for e in edits], dtype=torch.long, device=self.device)
        op = torch.tensor([e.op_id for e in edits], dtype=torch.long, device=self.device)
        target = torch.full((len(edits), 2), -1, dtype=torch.long, device=self.device)
        for i, e in enumerate(edits):
            if e.target:
                target[i, : min(2, len(e.target))] = torch.tensor(e.target[:2])
        payload = self._payload_vectors([payload_text(e) for e in edits])
        return self.actions(scale, op, target, payload), F.one_hot(scale, len(SCALES)).float()

    def observe(self, latents: dict[str, torch.Tensor]) -> State:
        return self.net.observe(latents)

    def step(self, state: State, action: torch.Tensor, scale: torch.Tensor) -> State:
        """One edit: action (B, A), scale weights (B, 3) -> the next state."""
        return self.net.step(state, action, scale)

    def imagine(self, state: State, actions: torch.Tensor, scales: torch.Tensor) -> list[State]:
        """Actions (B, T, A), scales (B, T, 3) -> T states; differentiable in ``actions`` and ``scales``."""
        return self.net.imagine(state, actions, scales)

    def features(self, state: State) -> torch.Tensor:
        """(B, feature_dim): what the heads (and the imagination policy's actor and critic) read."""
        return self.net.features(state)

    @property
    def feature_dim(self) -> int:
        return self.net.feature_dim

    @property
    def action_dim(self) -> int:
        return self.net.action_dim

    def reward(self, state: State) -> torch.Tensor:
        return self.net.reward(state)

    def uncertainty(self, state: State) -> torch.Tensor:
        return self.net.uncertainty(state)

    def planning_reward(self, state: State, penalty: float) -> torch.Tensor:
        """(B,) the reward a planner maximises: predicted reward minus ``penalty`` times its uncertainty."""
        return self.net.reward(state) - penalty * self.net.uncertainty(state)

    def refinable_parameters(self) -> list[torch.nn.Parameter]:
        """What online refinement may train on verified transitions: dynamics, heads and the edit embedder
        (the encoder stays frozen).
        """
        return [*self.net.parameters(), *self.actions.parameters()]

    def edit_effect(self, parent: State, child: State, op_ids: torch.Tensor | None = None,
                    extra: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The change the edits ``op_ids`` (B,) or (B, L) long make from ``parent`` to ``child``: predicted
        mean (B, 2) and calibrated std (B, 2), columns (accuracy, dense); ``mean ± 1.28 * std`` is the 80 %
        interval. With ``effect_prior`` the operations' prior is added (``op_ids`` then required); with
        ``relevance``, ``extra`` is required: ``relevance_inputs`` of the real parent and child chains.
        """
        if self.hparams.get("relevance") and extra is None:
            raise TapError("this world model reads each edit's relevance (relevance: true): pass "
                           "relevance_inputs(pairs, parents, children) of the real chains as extra "
                           "(tap.planning.halving.imagined_effects does).")
        mean, std = self.net.effect(parent, child, extra)
        return mean + self._prior_offset(op_ids, mean), std * self.interval_scale

    def _prior_offset(self, op_ids: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        """(B, 2) what the effect head's output is added to: with ``effect_prior``, the edits' operation prior
        (summed over a plan) in the accuracy column; else zeros.
        """
        offset = torch.zeros_like(like)
        if not self.hparams.effect_prior:
            return offset
        if op_ids is None:
            raise TapError("this world model predicts effects beyond its operation prior (effect_prior): "
                           "pass the edits' op_ids to edit_effect.")
        prior = self.op_prior(op_ids.to(self.op_delta.device).long())
        offset[:, 0] = prior.sum(-1) if prior.dim() > 1 else prior
        return offset

    def op_prior(self, op_ids: torch.Tensor) -> torch.Tensor:
        """The non-learned prior's score of edits (N,) long: the mean accuracy change of their operation over
        the training edits (0 for an operation never seen).
        """
        total, count = self.op_delta[0][op_ids], self.op_delta[1][op_ids]
        return total / count.clamp_min(1.0)

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> WorldModel:
        """Rebuild from a checkpoint file or run folder (eval mode, no gradients); needs no other file."""
        model = cls._load(path)
        model.requires_grad_(False)
        return model.eval()

    @classmethod
    def _build(cls, ckpt: dict) -> WorldModel:
        try:
            return super()._build(ckpt)
        except RuntimeError as err:
            if "Missing key" not in str(err):
                raise
            raise TapError("this world-model checkpoint predates the task encoder and effect head (missing weights: "
                           f"{str(err).splitlines()[1].strip()[:200]}); retrain it with "
                           "`python train.py fit --config configs/world_model.yaml`.") from err

    # ---- training -------------------------------------------------------------------------
    def _payload_vectors(self, texts: list[str]) -> torch.Tensor:
        """(N, backbone dim) payload text vectors; zero for edits without a payload."""
        with torch.no_grad():
            vec = self.encoder.net.embed_text([t or " " for t in texts])
        keep = torch.tensor([bool(t) for t in texts], device=vec.device, dtype=vec.dtype).unsqueeze(-1)
        return vec * keep

    def rollout(self, batch: dict, sample: bool = False) -> dict:
        """Observe every chain of every window and roll open-loop from each start through the real edits.

        With B windows of L edits: observed features (B, L+1, F); imagined rows are (start s, window b)
        pairs, L*B of them, rolled k = 1..L steps; an entry (k, row) is valid when s + k <= L.
        """
        B, T1 = batch["reward"].shape
        L_ = T1 - 1
        dev = self.device
        contexts, views = window_views(batch)
        with torch.no_grad():
            lat = self.encoder(contexts, views)
        obs = {k: lat[k].view(B, T1, -1) for k in LATENT_KEYS}  # each (B, L+1, D)
        pairs = batch.get("task_pairs") or [[] for _ in range(B)]
        chains = [Chain.from_json(js) for row in batch["chain_json"] for js in row]  # B * (L+1), row-major
        context = self.context_vectors([pairs[b] for b in range(B) for _ in range(T1)], chains)  # (B*(L+1), C)
        payload = self._payload_vectors([p for row in batch["edit_payload"] for p in row]).view(B, L_, -1)
        act = self.actions(batch["edit_scale"].to(dev), batch["edit_op"].to(dev), batch["edit_target"].to(dev),
                           payload)  # (B, L, A)
        scale_w = F.one_hot(batch["edit_scale"].to(dev), len(SCALES)).float()  # (B, L, 3)
        observed = self.net.observe({**{k: v.reshape(B * T1, -1) for k, v in obs.items()}, "task": context}, sample)
        feat_obs = self.net.features(observed).view(B, T1, -1)
        s_idx = torch.arange(L_, device=dev).repeat_interleave(B)  # (L*B,) start step of each row
        b_idx = torch.arange(B, device=dev).repeat(L_)  # (L*B,) window of each row
        state = {k: v.reshape(B, T1, v.shape[-1])[:, :L_].transpose(0, 1).reshape(L_ * B, v.shape[-1])
                 for k, v in observed.items()}
        feats, lats, dyn, rep, valid, t_idx = [], [], [], [], [], []
        for k in range(1, L_ + 1):
            t = s_idx + k
            tc = t.clamp(max=L_)
            state = self.net.step(state, act[b_idx, tc - 1], scale_w[b_idx, tc - 1], sample)
            d, r = self.net.kl(state, {key: obs[key][b_idx, tc] for key in obs}, self.hparams.free_nats)
            feats.append(self.net.features(state))
            lats.append(self.net.predict_latents(state))
            dyn.append(d)
            rep.append(r)
            valid.append(t <= L_)
            t_idx.append(tc)
        return {"obs": obs, "feat_obs": feat_obs, "feat_img": torch.stack(feats),
                "lat_img": {key: torch.stack([lat[key] for lat in lats]) for key in self.net.latent_keys},
                "kl_dyn": torch.stack(dyn),
                "kl_rep": torch.stack(rep), "valid": torch.stack(valid), "t": torch.stack(t_idx),
                "s": s_idx, "b": b_idx, "chains": chains}  # stacked tensors are (L, L*B, ...); chains B * (L+1)

    def loss_terms(self, batch: dict, stage: str = "train") -> tuple[dict[str, torch.Tensor], dict]:
        """The named loss terms on one batch of windows, and what the metrics need (``aux``)."""
        out = self.rollout(batch, sample=stage == "train")
        heads, dev = self.net.heads, self.device
        B, T1 = batch["reward"].shape
        reward = batch["reward"].to(dev)  # (B, L+1)
        response = batch["response"].to(dev)  # (B, L+1, 5)
        v = out["valid"]  # (L, L*B)
        b, t, s = out["b"].expand_as(v), out["t"], out["s"].expand_as(v)
        f_img, f_obs = out["feat_img"][v], out["feat_obs"].reshape(B * T1, -1)  # (M, F), (B*(L+1), F)
        feat = torch.cat([f_obs, f_img])
        real_r = torch.cat([reward.reshape(-1), reward[b[v], t[v]]])
        real_resp = torch.cat([response.reshape(B * T1, -1), response[b[v], t[v]]])
        real_lat = {k: o[b[v], t[v]] for k, o in out["obs"].items()}  # imagined entries only: observed are exact
        pred_lat = {k: lat[v] for k, lat in out["lat_img"].items()}
        terms: dict[str, torch.Tensor] = {}
        terms["latent"] = torch.stack([1 - (pred_lat[k] * real_lat[k]).sum(-1) for k in pred_lat]).mean()
        boot = None
        if stage == "train" and self.hparams.bootstrap < 1:
            boot = (torch.rand(len(heads.reward.members), feat.shape[0], device=dev) < self.hparams.bootstrap).float()
        terms["reward"] = heads.reward.loss(feat, real_r, boot).mean()
        terms["response"] = F.mse_loss(heads.predict_response(feat), real_resp)
        pred_r, unc = heads.reward(feat)
        n_obs = B * T1
        pred_obs = pred_r[:n_obs].view(B, T1)
        pred_img = pred_r[n_obs:]
        pred_delta = pred_img - pred_obs[b[v], s[v]]
        real_delta = reward[b[v], t[v]] - reward[b[v], s[v]]
        terms["delta"] = F.mse_loss(pred_delta, real_delta)
        terms["kl_dyn"] = out["kl_dyn"][v].mean()
        terms["kl_rep"] = out["kl_rep"][v].mean()
        # one-step edits (k = 1, every row valid): the effect head on (parent, child) features
        b1, s1 = out["b"], out["s"]
        f_parent, f_child = out["feat_obs"][b1, s1], out["feat_img"][0]  # (L*B, F) each
        dense = batch["dense"].to(dev)
        real_eff = torch.stack([reward[b1, s1 + 1] - reward[b1, s1], dense[b1, s1 + 1] - dense[b1, s1]], -1)  # (L*B, 2)
        boot1 = self._bootstrap(f_parent.shape[0]) if stage == "train" else None
        ops1 = batch["edit_op"].to(dev)[b1, s1]  # (L*B,) the one-step edits' operations
        offset = self._prior_offset(ops1, real_eff)  # (L*B, 2): the prior, when the head adds to it
        at = (b1 * T1 + s1).tolist()  # each one-step edit's parent in ``chains`` (row-major); its child is next
        chains, pairs = out["chains"], batch.get("task_pairs") or [[] for _ in range(B)]
        extra = self.relevance_inputs([pairs[i // T1] for i in at], [chains[i] for i in at],
                                      [chains[i + 1] for i in at])  # (L*B, 2) or None
        terms["effect"] = heads.effect.loss(f_parent, f_child, real_eff - offset, boot1, extra).mean()
        mean1, std1 = heads.effect(f_parent, f_child, extra)
        aux = {"out": out, "pred_obs": pred_obs, "pred_img": pred_img, "unc_img": unc[n_obs:], "pred_lat": pred_lat,
               "real_lat": real_lat, "f_img": f_img, "effect": (mean1 + offset, std1), "real_effect": real_eff}
        return terms, aux

    def _bootstrap(self, n: int) -> torch.Tensor | None:
        """(K, n) 0/1 masks, one per effect-ensemble member, or None when every member sees everything."""
        if self.hparams.bootstrap >= 1:
            return None
        k = len(self.net.heads.effect.members)
        return (torch.rand(k, n, device=self.device) < self.hparams.bootstrap).float()

    def total_loss(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(self.loss_scales[k] * val for k, val in terms.items())  # type: ignore[return-value]

    def _shared_step(self, batch: dict, stage: str) -> torch.Tensor:
        terms, aux = self.loss_terms(batch, stage)
        B = batch["reward"].shape[0]
        loss = self.total_loss(terms)
        log = {f"{stage}/loss/{k}": val for k, val in terms.items()}
        self.log_dict(log, batch_size=B, on_step=stage == "train", on_epoch=True)
        self.log(f"{stage}/loss", loss, batch_size=B, prog_bar=True, on_step=stage == "train", on_epoch=True)
        if stage == "train":
            if not self._prior_fixed:
                self._count_ops(batch["edit_op"][:, 0], batch["reward"][:, 1] - batch["reward"][:, 0])
        else:
            dense_img = self.net.heads.predict_response(aux["f_img"])[:, RESPONSE_FEATURES.index("dense")]
            self._update_metrics(stage, batch, aux["out"], aux["pred_obs"], aux["pred_img"], aux["unc_img"],
                                 aux["pred_lat"], aux["real_lat"], dense_img)
            (mean, std), real = aux["effect"], aux["real_effect"]
            group = task_ids(batch["task"], self._tasks).to(self.device)[aux["out"]["b"]]
            self.calibration[stage].update(mean[:, 0], std[:, 0], real[:, 0], group)
        return loss

    @torch.no_grad()
    def _count_ops(self, op: torch.Tensor, delta: torch.Tensor) -> None:
        """Add training edits (op ids (N,), measured accuracy change (N,)) to the non-learned prior."""
        op = op.to(self.device)
        self.op_delta[0].index_add_(0, op, delta.to(self.op_delta))
        self.op_delta[1].index_add_(0, op, torch.ones_like(delta).to(self.op_delta))

    def sibling_features(self, batch: dict, sample: bool = False) -> dict[str, torch.Tensor]:
        """Sibling groups (``collate_siblings``: N one-edit windows) from each parent's state: the parent's and
        the child's features (N, F), the edits' operations (N,), the measured change ``real`` (N, 2:
        accuracy, dense), the prior ``offset`` the effect head adds to (N, 2; zeros without ``effect_prior``)
        and the head's own output, ``residual`` and ``std`` (N, 2 each; the predicted change is
        ``offset + residual``), and what the head read beside the states, ``extra`` (``relevance_inputs``: (N, 2),
        or None).
        """
        dev, N = self.device, len(batch["task"])
        contexts, views = window_views(batch)  # 2N chains: parent, child of each sibling
        with torch.no_grad():
            lat = self.encoder(contexts, views)
        obs = {k: lat[k].view(N, 2, -1)[:, 0] for k in LATENT_KEYS}  # parents, (N, D) each
        parents = [Chain.from_json(row[0]) for row in batch["chain_json"]]
        parent = self.net.observe({**obs, "task": self.context_vectors(batch.get("task_pairs"), parents)}, sample)
        payload = self._payload_vectors([row[0] for row in batch["edit_payload"]])
        scale, op = batch["edit_scale"][:, 0].to(dev), batch["edit_op"][:, 0].to(dev)
        act = self.actions(scale, op, batch["edit_target"][:, 0].to(dev), payload)  # (N, A)
        child = self.net.step(parent, act, F.one_hot(scale, len(SCALES)).float(), sample)
        reward, dense = batch["reward"].to(dev), batch["dense"].to(dev)  # (N, 2)
        real = torch.stack([reward[:, 1] - reward[:, 0], dense[:, 1] - dense[:, 0]], -1)  # (N, 2)
        f_parent, f_child = self.net.features(parent), self.net.features(child)
        extra = self.relevance_inputs(batch.get("task_pairs"), parents,
                                      [Chain.from_json(row[1]) for row in batch["chain_json"]])  # (N, 2) or None
        residual, std = self.net.heads.effect(f_parent, f_child, extra)
        return {"parent": f_parent, "child": f_child, "op": op, "real": real, "offset": self._prior_offset(op, real),
                "residual": residual, "std": std, "extra": extra}

    def _sibling_step(self, batch: dict, stage: str) -> torch.Tensor:
        """Sibling groups (``collate_siblings``: N one-edit windows, ``group`` (N,)): every edit of a parent
        chain from the parent's state, ranked against the others on the same examples.
        """
        dev, N = self.device, len(batch["task"])
        sib = self.sibling_features(batch, sample=stage == "train")
        f_parent, f_child, op, real, offset = sib["parent"], sib["child"], sib["op"], sib["real"], sib["offset"]
        group = batch["group"].to(dev)
        effect = self.net.heads.effect
        mean, std = sib["residual"] + offset, sib["std"]  # (N, 2) each
        boot = self._bootstrap(N) if stage == "train" else None
        weight = torch.where(_ordered_rows(real[:, 0], group), 1.0, self.hparams.flat_weight)  # (N,)
        per_row = effect.loss(f_parent, f_child, real - offset, boot, sib["extra"])  # (N,)
        terms = {"effect": (per_row * weight).sum() / weight.sum().clamp_min(1e-8),
                 "rank": _ordered_mean(pairwise_ranking_loss(mean[:, 0], real[:, 0], group), real[:, 0], group),
                 "rank_dense": _ordered_mean(pairwise_ranking_loss(mean[:, 1], real[:, 1], group), real[:, 1], group)}
        loss = self.total_loss(terms)
        G = int(group.max()) + 1
        self.log_dict({f"{stage}/loss/{k}" + ("_siblings" if k == "effect" else ""): val for k, val in terms.items()},
                      batch_size=G, on_step=stage == "train", on_epoch=True)
        self.log(f"{stage}/loss_siblings", loss, batch_size=G, on_step=stage == "train", on_epoch=True)
        if stage == "train":
            if not self._prior_fixed:
                self._count_ops(op, real[:, 0])
        else:
            tid = task_ids(batch["task"], self._tasks).to(dev)
            gid = group + self._groups_seen
            self._groups_seen += G
            delta_a, delta_b = _split_half_deltas(batch)
            delta_a, delta_b = delta_a.to(dev), delta_b.to(dev)
            for who, score_acc, score_dense in (("model", mean[:, 0], mean[:, 1]),
                                                ("prior", self.op_prior(op), self.op_prior(op)),
                                                ("ceiling", delta_a, None)):
                m = self.sibling_metrics[f"{stage}_{who}"]
                m["sibling_half"].update(score_acc, delta_b, gid, tid)
                m["edit_half"].update(score_acc, delta_b, tid)
                if who == "ceiling":
                    continue
                m["sibling"].update(score_acc, real[:, 0], gid, tid)
                m["gain"].update(score_acc, delta_b, delta_a, gid, tid)
                m["edit"].update(score_acc, real[:, 0], tid)
                m["edit_dense"].update(score_dense, real[:, 1], tid)
            self.calibration[stage].update(mean[:, 0], std[:, 0], real[:, 0], tid)
        return loss

    def _update_metrics(self, stage: str, batch: dict, out: dict, pred_obs: torch.Tensor, pred_img: torch.Tensor,
                        unc_img: torch.Tensor, pred_lat: dict, real_lat: dict, dense_img: torch.Tensor) -> None:
        dev = self.device
        reward = batch["reward"].to(dev)
        v = out["valid"]
        b, t, s = out["b"].expand_as(v)[v], out["t"][v], out["s"].expand_as(v)[v]
        depth = (t - s)  # (M,) horizon of each imagined entry
        group = task_ids(batch["task"], self._tasks).to(dev)
        m = self.ranked[stage]
        real_img = reward[b, t]
        m["reward"].update(pred_img, real_img, group[b])
        m["dense"].update(dense_img, batch["dense"].to(dev)[b, t], group[b])
        m["reward_observed"].update(pred_obs.reshape(-1), reward.reshape(-1),
                                    group.repeat_interleave(reward.shape[1]))
        one = depth == 1
        m["edit"].update((pred_img - pred_obs[b, s])[one], (real_img - reward[b, s])[one], group[b][one])
        m["uncertainty"].update(unc_img, (pred_img - real_img).abs(), group[b])
        chain_real = real_lat["chain"]
        err = 1 - (pred_lat["chain"] * chain_real).sum(-1)  # (M,) model's latent error
        copy = 1 - (out["obs"]["chain"][b, s] * chain_real).sum(-1)  # (M,) error of predicting "no change"
        for k in depth.unique().tolist():
            for name, values in (("model", err), ("copy", copy)):
                key = f"{stage}_{name}_{k}"
                if key not in self.horizon_error:
                    self.horizon_error[key] = MeanMetric().to(dev)
                self.horizon_error[key].update(values[depth == k])
        meta = [[task_slug(batch["task"][i]), f"{reward[i, 0].item():.3f}", f"{pred_obs[i, 0].item():.3f}"]
                for i in range(reward.shape[0])]
        self.projector.add(out["obs"]["chain"][:, 0], meta)

    def _end_eval(self, stage: str) -> None:
        names = {i: task_slug(t) for t, i in self._tasks.items()}
        self._end_siblings(stage, names)
        for kind, metric in self.ranked[stage].items():
            if not metric.preds:
                continue
            if kind == "reward":
                log_scatter(self, f"{stage}/reward_scatter", torch.cat(metric.preds), torch.cat(metric.target))
            for key, val in metric.compute().items():
                if kind == "uncertainty" and key != "spearman":
                    continue
                stat, _, gid = key.partition("/")
                name = f"{stage}/{kind}/{stat}" + (f"/{names.get(int(gid), gid)}" if gid else "")
                self.log(name, val, prog_bar=(kind == "reward" and key == "spearman"))
            metric.reset()
        for key, metric in self.horizon_error.items():
            st, name, k = key.split("_")
            if st == stage and metric.update_count > 0:
                self.log(f"{stage}/latent_error{'_copy' if name == 'copy' else ''}/h{k}", metric.compute())
                metric.reset()

    def _end_siblings(self, stage: str, names: dict[int, str]) -> None:
        """Log the sibling-group read-outs (model, prior and, judged on the second half, the noise ceiling) and
        the effect's calibration; after validation, refit ``interval_scale`` on what validation saw.
        """
        def name(key: str, prefix: str) -> str:
            stat, _, gid = key.partition("/")
            return f"{prefix}/{stat}" + (f"/{names.get(int(gid), gid)}" if gid else "")

        computed: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
        for who in ("model", "prior", "ceiling"):
            for kind, metric in self.sibling_metrics[f"{stage}_{who}"].items():
                if metric.update_count == 0:
                    continue
                computed[who, kind] = out = metric.compute()
                prefix = f"{stage}/" + ("" if who == "model" else f"{who}/") + SIBLING_LOG_NAMES[kind]
                for key, val in out.items():
                    if not kind.startswith("edit") or key.startswith("spearman"):
                        self.log(name(key, prefix), val)
                metric.reset()
        for who in ("model", "prior"):
            for kind in HALF_KINDS:
                if (who, kind) in computed and ("ceiling", kind) in computed:
                    prefix = f"{stage}/" + ("" if who == "model" else f"{who}/") + SIBLING_LOG_NAMES[kind]
                    for key, val in ceiling_shares(computed[who, kind], computed["ceiling", kind]).items():
                        self.log(name(key, prefix), val)
        cal = self.calibration[stage]
        if cal.update_count > 0:
            for key, val in cal.compute(scale=float(self.interval_scale)).items():
                self.log(name(key, f"{stage}/calibration"), val)
            if stage == "val":
                self.interval_scale.fill_(cal.conformal_scale())
            self.log(f"{stage}/calibration/scale", self.interval_scale.clone())
            cal.reset()
        self._groups_seen = 0

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


def task_closeness(embed: Callable[[list[str]], torch.Tensor], pairs: list[list[str]],
                   chains: list[Chain]) -> torch.Tensor:
    """(M,) for M = ``len(chains)``, a multiple of ``len(pairs)`` (chains cycle over the rows' pairs): the cosine
    between ``embed``'s vector of each chain's ``prompt_text`` and the unit mean of its row's pairs' unit vectors
    (0 for a row without pairs). ``embed``: texts -> (N, D). Each distinct pair set is embedded once.
    """
    keys = list(dict.fromkeys(tuple(p) for p in pairs if p))
    direction: dict[tuple[str, ...], torch.Tensor] = {}
    if keys:
        vec = F.normalize(embed([t for k in keys for t in k]), dim=-1)  # (sum of pairs, D)
        for k, part in zip(keys, vec.split([len(k) for k in keys])):
            direction[k] = F.normalize(part.mean(0), dim=0)
    prompts = F.normalize(embed([prompt_text(c) or " " for c in chains]), dim=-1)  # (M, D)
    zero = prompts.new_zeros(prompts.shape[-1])
    task = torch.stack([direction.get(tuple(p), zero) for p in pairs]) if pairs else prompts[:0]  # (N, D)
    return (prompts.view(-1, len(pairs) or 1, prompts.shape[-1]) * task).sum(-1).view(-1)


def ceiling_shares(scorer: dict[str, torch.Tensor], ceiling: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A scorer's Spearman as a share of the noise ceiling's, per task (``share/<task id>``: the two read-outs'
    ``spearman/<task id>``, judged alike) and their mean over the tasks where both are defined and the ceiling is
    positive (``share``; NaN where none is).
    """
    shares = {}
    for key, val in scorer.items():
        stat, _, tid = key.partition("/")
        c = ceiling.get(key)
        if stat == "spearman" and tid and c is not None and c > 0 and not val.isnan():
            shares[f"share/{tid}"] = val / c
    mean = torch.stack(list(shares.values())).mean() if shares else torch.tensor(float("nan"))
    return {"share": mean, **shares}


def _ordered_groups(target: torch.Tensor, group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Whether each group's targets are not all equal (it has an order): (G,) bool over ``group.unique()``,
    and each row's index into it (N,).
    """
    ids, inv = group.unique(return_inverse=True)
    hi = torch.full((len(ids),), float("-inf"), device=target.device).scatter_reduce(0, inv, target, "amax")
    lo = torch.full((len(ids),), float("inf"), device=target.device).scatter_reduce(0, inv, target, "amin")
    return hi > lo, inv


def _ordered_rows(target: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """(N,) bool: the row's group has an order (its targets (N,) are not all equal)."""
    ordered, inv = _ordered_groups(target, group)
    return ordered[inv]


def _ordered_mean(per_group: torch.Tensor, target: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Mean of a per-group loss (G,) over the groups whose targets are not all equal (they have an order)."""
    ordered, _ = _ordered_groups(target, group)
    return per_group[ordered].mean() if ordered.any() else per_group.sum() * 0.0


def _split_half_deltas(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Accuracy change of each sibling on the first and on the second half of its examples (N,) each:
    two independent evaluations, one to pick with (the oracle's) and one to judge every pick.
    """
    correct, mask = batch["correct"], batch["example_mask"]  # (N, 2, E), (N, E)
    n = mask.sum(1, keepdim=True)  # (N, 1)
    pos = torch.arange(mask.shape[1]).unsqueeze(0)  # (1, E)
    first = (pos < n // 2) & mask
    second = (pos >= n // 2) & mask

    def delta(half: torch.Tensor) -> torch.Tensor:
        acc = (correct * half.unsqueeze(1)).sum(-1) / half.sum(-1, keepdim=True).clamp_min(1)  # (N, 2)
        return acc[:, 1] - acc[:, 0]

    return delta(first), delta(second)
