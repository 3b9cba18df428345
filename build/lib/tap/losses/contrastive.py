"""Proximity-preserving contrastive terms for the chain encoder.

Positives are defined by the frozen LLM's responses, not by text: two chains of the same task are
positives when the LLM answered alike under both (``response_distance`` at most ``threshold``).
The loss is the supervised-contrastive form of InfoNCE with several positives per anchor
(Khosla et al., 2020, "Supervised Contrastive Learning", eq. 2 L_out; Oord et al., 2018, "CPC"),
and ``distance_alignment`` pulls the latent distance of every same-task pair towards its response
distance, so that distances, not only neighbourhoods, carry meaning for the planner.
"""

from __future__ import annotations

import torch
from torch import nn


def response_distance(correct: torch.Tensor, gold_prob: torch.Tensor, mask: torch.Tensor,
                      group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """How differently the LLM responded under two chains, in [0, 1].

    Args:
        correct: (N, E) per-example correctness (0/1) on each chain's evaluated examples.
        gold_prob: (N, E) per-example probability of the gold answer.
        mask: (N, E) which example slots are real.
        group: (N,) task id; chains of different tasks were evaluated on different examples.

    Returns:
        ``dist`` (N, N): mean over shared examples of (|correct_i - correct_j| + |gold_i - gold_j|) / 2;
        ``valid`` (N, N) bool: same task, i != j, and at least one shared example.
    """
    m = mask.float()
    shared = m[:, None, :] * m[None, :, :]  # (N, N, E)
    diff = 0.5 * ((correct[:, None] - correct[None]).abs() + (gold_prob[:, None] - gold_prob[None]).abs())
    count = shared.sum(-1)
    dist = (diff * shared).sum(-1) / count.clamp_min(1.0)
    n = correct.shape[0]
    valid = (group[:, None] == group[None]) & (count > 0) & ~torch.eye(n, dtype=torch.bool, device=correct.device)
    return dist, valid


class ResponseInfoNCE(nn.Module):
    """Multi-positive InfoNCE on unit latents with response-defined positives.

    For anchor i with positives P(i) = {j : valid_ij and dist_ij <= threshold}:
    ``l_i = -1/|P(i)| sum_{p in P(i)} log( exp(s_ip / t) / sum_{a != i} exp(s_ia / t) )``, where s is
    cosine similarity and every other chain in the batch (any task) is in the denominator. Anchors
    without a positive are skipped. Returns the mean over anchors and the fraction that had one.

    Args:
        temperature: softmax temperature t (> 0).
        threshold: largest response distance that still counts as a positive, in [0, 1].
    """

    def __init__(self, temperature: float = 0.1, threshold: float = 0.05) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}.")
        if not 0 <= threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}.")
        self.temperature, self.threshold = temperature, threshold

    def forward(self, z: torch.Tensor, dist: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Z (N, D) unit vectors; dist, valid (N, N) from ``response_distance``."""
        n = z.shape[0]
        eye = torch.eye(n, dtype=torch.bool, device=z.device)
        logits = (z @ z.T / self.temperature).masked_fill(eye, float("-inf"))  # (N, N)
        log_prob = logits - logits.logsumexp(dim=1, keepdim=True)
        pos = valid & (dist <= self.threshold)
        n_pos = pos.sum(1)
        has = n_pos > 0
        if not has.any():
            return z.sum() * 0.0, has.float().mean()
        per_anchor = -(log_prob.masked_fill(~pos, 0.0)).sum(1) / n_pos.clamp_min(1)
        return per_anchor[has].mean(), has.float().mean()


def distance_alignment(z: torch.Tensor, dist: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over valid pairs of (cosine distance / 2 - response distance)^2; both lie in [0, 1]."""
    if not valid.any():
        return z.sum() * 0.0
    latent = (1.0 - z @ z.T) / 2.0  # (N, N)
    return ((latent - dist) ** 2)[valid].mean()


def alignment_uniformity(z: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Representation health (Wang & Isola, 2020): alignment = mean ||z_i - z_j||^2 over positive pairs
    (lower is better), uniformity = log mean exp(-2 ||z_i - z_j||^2) over all pairs (lower is more uniform).
    """
    sq = torch.cdist(z, z).pow(2)  # (N, N)
    off = ~torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    align = sq[pos].mean() if pos.any() else sq.new_tensor(float("nan"))
    uniform = torch.log(torch.exp(-2.0 * sq[off]).mean())
    return align, uniform
