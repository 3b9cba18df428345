"""The contrastive chain encoder: chains whose LLM responses are alike end up close in latent space.

Trained on the chains of collected trajectories with two named terms (``tap.losses.contrastive``):
``infonce`` (response-defined positives) and ``align`` (latent distance ~ response distance). Logs
representation health (``*/health/std``, ``alignment``, ``uniformity``) so a collapsed encoder shows
in TensorBoard, and on val/test the Spearman correlation between latent and response distance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torchmetrics import SpearmanCorrCoef

from tap.errors import unknown_loss_terms
from tap.losses.contrastive import ResponseInfoNCE, alignment_uniformity, distance_alignment, response_distance
from tap.models.encoder import ChainEncoderNet, ChainViews
from tap.models.text import build_backbone
from tap.systems.base import TapSystem
from tap.systems.batch import task_ids, unique_chains
from tap.systems.tensorboard import LatentProjector, log_scatter

ENCODER_LOSSES = ("infonce", "align")


class ContrastiveEncoder(TapSystem):
    """``(task context, chain) -> {instruction, segment, token, chain}`` latents, trained contrastively.

    Args:
        backbone: ``minilm`` (pretrained all-MiniLM-L6-v2, offline) or ``hash`` (tiny, from scratch).
        latent_dim: size of every latent.
        hidden_dim: width of the projection MLPs.
        lora_rank: LoRA rank for the MiniLM backbone (0 = frozen backbone, only the heads train).
        lora_alpha: LoRA scaling numerator.
        max_tokens: MiniLM truncation length.
        hash_dim: width of the ``hash`` backbone.
        temperature: InfoNCE temperature.
        positive_threshold: response distance at or below which two chains of a task are positives.
        loss_scales: weight per loss term (``infonce``, ``align``); missing terms weigh 1.
        lr: learning rate of the heads (and of the ``hash`` backbone).
        backbone_lr: learning rate of the LoRA adapters.
        weight_decay: AdamW weight decay.
    """

    #: the loss terms ``loss_scales`` may name (checked by the CLI before anything is built)
    LOSS_TERMS: tuple[str, ...] = ENCODER_LOSSES

    def __init__(self, backbone: Literal["minilm", "hash"] = "minilm", latent_dim: int = 64, hidden_dim: int = 256,
                 lora_rank: int = 8, lora_alpha: int = 16, max_tokens: int = 256, hash_dim: int = 64,
                 temperature: float = 0.1, positive_threshold: float = 0.05,
                 loss_scales: dict[str, float] | None = None, lr: float = 1e-3, backbone_lr: float = 1e-4,
                 weight_decay: float = 0.01) -> None:
        super().__init__()
        self.save_hyperparameters()
        unknown = set(loss_scales or {}) - set(ENCODER_LOSSES)
        if unknown:
            raise unknown_loss_terms(unknown, ENCODER_LOSSES)
        self.loss_scales = {k: 1.0 for k in ENCODER_LOSSES} | dict(loss_scales or {})
        text = (build_backbone("minilm", lora_rank=lora_rank, lora_alpha=lora_alpha, max_tokens=max_tokens)
                if backbone == "minilm" else build_backbone("hash", dim=hash_dim))
        self.net = ChainEncoderNet(text, latent_dim, hidden_dim)
        self.infonce = ResponseInfoNCE(temperature, positive_threshold)
        self.distance_spearman = torch.nn.ModuleDict({s: SpearmanCorrCoef() for s in ("val", "test")})
        self._tasks: dict[str, int] = {}
        self.projector = LatentProjector(["task", "reward"])
        self._pairs: list[tuple[torch.Tensor, torch.Tensor]] = []  # (latent, response) distances per eval batch

    def forward(self, contexts: list[str], views: list[ChainViews]) -> dict[str, torch.Tensor]:
        """N chains -> dict of (N, latent_dim) unit latents (``LATENT_KEYS``)."""
        return self.net(contexts, views)

    def _shared_step(self, batch: dict, stage: str) -> torch.Tensor:
        data = unique_chains(batch)
        z = self(data["contexts"], data["views"])["chain"]  # (N, D)
        group = task_ids(data["task"], self._tasks).to(z.device)
        dist, valid = response_distance(data["correct"], data["gold_prob"], data["mask"], group)
        terms = {}
        terms["infonce"], positive_rate = self.infonce(z, dist, valid)
        terms["align"] = distance_alignment(z, dist, valid)
        loss = sum(self.loss_scales[k] * v for k, v in terms.items())
        n = len(data["views"])
        log = {f"{stage}/loss/{k}": v for k, v in terms.items()}
        alignment, uniformity = alignment_uniformity(z.detach(), valid & (dist <= self.infonce.threshold))
        log |= {f"{stage}/positive_rate": positive_rate,
                f"{stage}/health/std": z.detach().std(0).mean(), f"{stage}/health/uniformity": uniformity}
        if not torch.isnan(alignment):
            log[f"{stage}/health/alignment"] = alignment
        self.log_dict(log, batch_size=n, on_step=stage == "train", on_epoch=True, prog_bar=False)
        self.log(f"{stage}/loss", loss, batch_size=n, prog_bar=True, on_step=stage == "train", on_epoch=True)
        if stage != "train" and valid.any():
            latent = (1.0 - z @ z.T) / 2.0
            iu = torch.triu(valid, diagonal=1)
            self.distance_spearman[stage].update(latent[iu], dist[iu])
            meta = [[t, f"{r:.3f}"] for t, r in zip(data["task"], data["reward"].tolist())]
            self.projector.add(z, meta)
            self._pairs.append((latent[iu].detach().cpu(), dist[iu].cpu()))
        return loss

    def _end_eval(self, stage: str) -> None:
        metric = self.distance_spearman[stage]
        if metric.preds:
            self.log(f"{stage}/distance_spearman", metric.compute(), prog_bar=True)
        metric.reset()
        pairs = self._pairs
        if pairs:
            log_scatter(self, f"{stage}/latent_vs_response_distance", torch.cat([p[0] for p in pairs]),
                        torch.cat([p[1] for p in pairs]), xlabel="response distance", ylabel="latent distance")
        self._pairs = []

    def configure_optimizers(self) -> torch.optim.Optimizer:
        lora = [p for n, p in self.named_parameters() if p.requires_grad and "lora_" in n]
        rest = [p for n, p in self.named_parameters() if p.requires_grad and "lora_" not in n]
        groups = [{"params": rest, "lr": self.hparams.lr}]
        if lora:
            groups.append({"params": lora, "lr": self.hparams.backbone_lr})
        return torch.optim.AdamW(groups, weight_decay=self.hparams.weight_decay)

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> ContrastiveEncoder:
        """Rebuild from a checkpoint file or run folder (frozen, eval mode)."""
        return cls._load(path).freeze_encoder()

    def freeze_encoder(self) -> ContrastiveEncoder:
        """Stop gradients and dropout; vectors are then memoised by text."""
        self.requires_grad_(False)
        self.eval()
        return self
