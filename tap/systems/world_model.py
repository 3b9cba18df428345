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
- ``kl_dyn`` / ``kl_rep``: DreamerV3's balanced KL between posterior and prior, with free nats.

Planners use only the narrow interface: ``encode_chains``, ``embed_edits``, ``observe``,
``imagine``, ``reward``, ``uncertainty`` (and ``from_checkpoint`` to load one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric

from tap.chains.chain import Chain
from tap.chains.edits import SCALES, Edit
from tap.chains.render import chain_views
from tap.collection.datamodule import RESPONSE_FEATURES, SCALE_IDS, payload_text
from tap.errors import unknown_loss_terms
from tap.metrics import GroupedRankAgreement
from tap.models import WORLD_MODELS, EditEmbedder, State, WorldModelNet
from tap.models.encoder import LATENT_KEYS
from tap.systems.base import TapSystem
from tap.systems.batch import task_ids, window_views
from tap.systems.checkpoints import init_hparams, own_hyperparameters, read_checkpoint
from tap.systems.encoder import ContrastiveEncoder
from tap.systems.tensorboard import LatentProjector, log_scatter

WM_LOSSES = ("latent", "reward", "response", "delta", "kl_dyn", "kl_rep")
DEFAULT_SCALES = {"latent": 1.0, "reward": 1.0, "response": 1.0, "delta": 1.0, "kl_dyn": 0.5, "kl_rep": 0.1}
RANKED = ("reward", "dense", "reward_observed", "edit", "uncertainty")


def _encoder_spec(encoder: str) -> tuple[dict, dict | None]:
    """Encoder hyperparameters (and weights) from a checkpoint, or a fresh frozen one by backbone name."""
    if encoder in ("hash", "minilm"):
        return {"backbone": encoder, "lora_rank": 0}, None
    _, ckpt = read_checkpoint(encoder, ContrastiveEncoder.__name__)
    return init_hparams(ckpt), ckpt["state_dict"]


def _slug(task: str) -> str:
    return task.split(":")[-1].split("/")[-1]


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
        bootstrap: fraction of the batch each reward head trains on.
        loss_scales: weight per loss term (``WM_LOSSES``); missing terms take ``DEFAULT_SCALES``.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
    """

    #: the loss terms ``loss_scales`` may name (checked by the CLI before anything is built)
    LOSS_TERMS: tuple[str, ...] = WM_LOSSES

    def __init__(self, encoder: str = "checkpoints/encoder", encoder_hparams: dict | None = None,
                 world_model: Literal["hierarchical", "flat", "demo"] = "hierarchical", action_dim: int = 64,
                 deter_dim: int = 128, stoch_dim: int = 32, hidden_dim: int = 256, ensemble: int = 5,
                 bins: int = 41, free_nats: float = 1.0, bootstrap: float = 0.8,
                 loss_scales: dict[str, float] | None = None, lr: float = 3e-4, weight_decay: float = 1e-4) -> None:
        super().__init__()
        unknown = set(loss_scales or {}) - set(WM_LOSSES)
        if unknown:
            raise unknown_loss_terms(unknown, WM_LOSSES)
        if world_model not in WORLD_MODELS:
            raise ValueError(f"unknown world_model {world_model!r}; choose one of {list(WORLD_MODELS)}.")
        self.save_hyperparameters()
        encoder_state = None
        if encoder_hparams is None:
            encoder_hparams, encoder_state = _encoder_spec(encoder)
            self.hparams["encoder_hparams"] = encoder_hparams  # checkpoints rebuild the encoder without its file
        self.loss_scales = DEFAULT_SCALES | dict(loss_scales or {})
        with own_hyperparameters():
            self.encoder = ContrastiveEncoder(**encoder_hparams)
        if encoder_state is not None:
            self.encoder.load_state_dict(encoder_state)
        self.encoder.freeze_encoder()
        latent_dim = self.encoder.hparams.latent_dim
        self.actions = EditEmbedder(self.encoder.net.backbone.dim, action_dim)
        heads = {"hidden_dim": hidden_dim, "members": ensemble, "bins": bins}
        if world_model == "demo":
            self.net: WorldModelNet = WORLD_MODELS[world_model](latent_dim, action_dim, hidden_dim, heads)
        else:
            self.net = WORLD_MODELS[world_model](latent_dim, action_dim, deter_dim, stoch_dim, hidden_dim, heads=heads)
        self.ranked = torch.nn.ModuleDict({s: torch.nn.ModuleDict({k: GroupedRankAgreement() for k in RANKED})
                                           for s in ("val", "test")})
        self.horizon_error = torch.nn.ModuleDict()  # "<stage>_<model|copy>_<k>" -> MeanMetric, made on first use
        self._tasks: dict[str, int] = {}
        self.projector = LatentProjector(["task", "reward", "predicted_reward"])

    def train(self, mode: bool = True) -> WorldModel:
        super().train(mode)
        self.encoder.eval()  # frozen: no dropout, and its text vectors stay memoised
        return self

    # ---- the planner-facing interface -------------------------------------------------------
    @torch.no_grad()
    def encode_chains(self, chains: list[Chain], context: str) -> dict[str, torch.Tensor]:
        """Encoder latents of real chains of one task: dict of (N, latent_dim)."""
        return self.encoder([context] * len(chains), [chain_views(c) for c in chains])  # type: ignore[misc]

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

    def imagine(self, state: State, actions: torch.Tensor, scales: torch.Tensor) -> list[State]:
        """Actions (B, T, A), scales (B, T, 3) -> T states; differentiable in ``actions`` and ``scales``."""
        return self.net.imagine(state, actions, scales)

    def reward(self, state: State) -> torch.Tensor:
        return self.net.reward(state)

    def uncertainty(self, state: State) -> torch.Tensor:
        return self.net.uncertainty(state)

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> WorldModel:
        """Rebuild from a checkpoint file or run folder (eval mode, no gradients); needs no other file."""
        model = cls._load(path)
        model.requires_grad_(False)
        return model.eval()

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
        payload = self._payload_vectors([p for row in batch["edit_payload"] for p in row]).view(B, L_, -1)
        act = self.actions(batch["edit_scale"].to(dev), batch["edit_op"].to(dev), batch["edit_target"].to(dev),
                           payload)  # (B, L, A)
        scale_w = F.one_hot(batch["edit_scale"].to(dev), len(SCALES)).float()  # (B, L, 3)
        observed = self.net.observe({k: v.reshape(B * T1, -1) for k, v in obs.items()}, sample)
        feat_obs = self.net.features(observed).view(B, T1, -1)
        s_idx = torch.arange(L_, device=dev).repeat_interleave(B)  # (L*B,) start step of each row
        b_idx = torch.arange(B, device=dev).repeat(L_)  # (L*B,) window of each row
        state = {k: v.view(B, T1, -1)[:, :L_].transpose(0, 1).reshape(L_ * B, -1) for k, v in observed.items()}
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
                "s": s_idx, "b": b_idx}  # stacked tensors are (L, L*B, ...)

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
        aux = {"out": out, "pred_obs": pred_obs, "pred_img": pred_img, "unc_img": unc[n_obs:], "pred_lat": pred_lat,
               "real_lat": real_lat, "f_img": f_img}
        return terms, aux

    def total_loss(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(self.loss_scales[k] * val for k, val in terms.items())  # type: ignore[return-value]

    def _shared_step(self, batch: dict, stage: str) -> torch.Tensor:
        terms, aux = self.loss_terms(batch, stage)
        B = batch["reward"].shape[0]
        loss = self.total_loss(terms)
        log = {f"{stage}/loss/{k}": val for k, val in terms.items()}
        self.log_dict(log, batch_size=B, on_step=stage == "train", on_epoch=True)
        self.log(f"{stage}/loss", loss, batch_size=B, prog_bar=True, on_step=stage == "train", on_epoch=True)
        if stage != "train":
            dense_img = self.net.heads.predict_response(aux["f_img"])[:, RESPONSE_FEATURES.index("dense")]
            self._update_metrics(stage, batch, aux["out"], aux["pred_obs"], aux["pred_img"], aux["unc_img"],
                                 aux["pred_lat"], aux["real_lat"], dense_img)
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
        meta = [[_slug(batch["task"][i]), f"{reward[i, 0].item():.3f}", f"{pred_obs[i, 0].item():.3f}"]
                for i in range(reward.shape[0])]
        self.projector.add(out["obs"]["chain"][:, 0], meta)

    def _end_eval(self, stage: str) -> None:
        names = {i: _slug(t) for t, i in self._tasks.items()}
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

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
