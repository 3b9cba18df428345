"""The chain encoder network: ``(task context, chain views) -> latents`` at three scales plus a chain latent.

Each scale reads its own view of the chain (``tap.chains.render.chain_views``):

- instruction: instruction, answer-format spec and demonstrations, as one text;
- segment: the instruction and each step as separate texts, pooled by attention over positions
  (so reordering steps moves the latent);
- token: the words of instruction and steps, as one text.

All three see the task context (its description) and are projected to unit vectors; the chain
latent mixes the three. Unit vectors make cosine distance the latent metric everywhere.
"""

from __future__ import annotations

from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import nn

from tap.models.layers import mlp
from tap.models.text import TextBackbone

LEVELS: tuple[str, ...] = ("instruction", "segment", "token")  # top to bottom
LATENT_KEYS: tuple[str, ...] = (*LEVELS, "chain")


class ChainViews(TypedDict):
    """One chain's text per scale, as produced by ``chain_views``."""

    instruction: str
    segments: list[str]
    tokens: str


class ChainEncoderNet(nn.Module):
    """Latents ``{instruction, segment, token, chain}``, each (N, latent_dim) and unit-norm.

    Args:
        backbone: texts -> vectors.
        latent_dim: size of every latent.
        hidden_dim: width of the projection MLPs.
        max_segments: positions embedded for segment pooling (later segments share the last).
    """

    def __init__(self, backbone: TextBackbone, latent_dim: int = 64, hidden_dim: int = 256,
                 max_segments: int = 16) -> None:
        super().__init__()
        self.backbone, self.latent_dim, self.max_segments = backbone, latent_dim, max_segments
        d = backbone.dim
        self.position = nn.Embedding(max_segments, d)
        self.pool_query = nn.Linear(d, 1)
        self.proj = nn.ModuleDict({lvl: mlp(2 * d, hidden_dim, latent_dim) for lvl in LEVELS})
        self.mix = mlp(3 * latent_dim, hidden_dim, latent_dim)

    def forward(self, contexts: list[str], views: list[ChainViews]) -> dict[str, torch.Tensor]:
        """N chains (with their task contexts) -> dict of (N, latent_dim) unit vectors."""
        n = len(views)
        seg_counts = [max(len(v["segments"]), 1) for v in views]
        seg_texts = [s for v in views for s in (v["segments"] or [""])]
        texts = contexts + [v["instruction"] for v in views] + [v["tokens"] for v in views] + seg_texts
        vec = self.backbone(texts)  # (3N + S, d)
        ctx, instr, tok, seg = vec[:n], vec[n : 2 * n], vec[2 * n : 3 * n], vec[3 * n :]
        pooled = self._pool_segments(seg, seg_counts)  # (N, d)
        out = {
            "instruction": F.normalize(self.proj["instruction"](torch.cat([instr, ctx], -1)), dim=-1),
            "segment": F.normalize(self.proj["segment"](torch.cat([pooled, ctx], -1)), dim=-1),
            "token": F.normalize(self.proj["token"](torch.cat([tok, ctx], -1)), dim=-1),
        }
        out["chain"] = F.normalize(self.mix(torch.cat([out[lvl] for lvl in LEVELS], -1)), dim=-1)
        return out

    def _pool_segments(self, seg: torch.Tensor, counts: list[int]) -> torch.Tensor:
        """Attention pooling of each chain's segment vectors (with position embeddings)."""
        n, width = len(counts), max(counts)
        padded = seg.new_zeros(n, width, seg.shape[-1])  # (N, S_max, d)
        mask = torch.zeros(n, width, dtype=torch.bool, device=seg.device)
        start = 0
        for i, c in enumerate(counts):
            padded[i, :c], mask[i, :c] = seg[start : start + c], True
            start += c
        pos = torch.arange(width, device=seg.device).clamp_max(self.max_segments - 1)
        padded = padded + self.position(pos)[None]
        scores = self.pool_query(padded).squeeze(-1).masked_fill(~mask, float("-inf"))  # (N, S_max)
        return (scores.softmax(-1).unsqueeze(-1) * padded).sum(1)

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """Raw backbone vectors (N, backbone.dim), e.g. for edit payloads."""
        return self.backbone(texts)
