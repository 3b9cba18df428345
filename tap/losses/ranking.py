"""Ranking terms over sibling groups: the world model must order the edits of one parent chain the way
the LLM's measured deltas do, which is the decision a search makes.

- ``pairwise_ranking_loss``: RankNet's logistic loss on every ordered pair of siblings whose measured
  deltas differ by more than ``margin`` (Burges et al., 2005, "Learning to Rank using Gradient Descent").
- ``listwise_ranking_loss``: ListNet's top-one cross-entropy between the softmax of the measured deltas
  (temperature ``tau``) and the softmax of the predictions, per group (Cao et al., 2007, "Learning to
  Rank: From Pairwise Approach to Listwise Approach").

Both take flat tensors with a group id per sibling, so groups of different sizes share one batch, and
return one value per group (unreduced), so the system weights and logs them as named terms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check(pred: torch.Tensor, target: torch.Tensor, group: torch.Tensor) -> None:
    if not (pred.shape == target.shape == group.shape) or pred.dim() != 1:
        raise ValueError(f"pred, target and group must be 1-D and alike; got {tuple(pred.shape)}, "
                         f"{tuple(target.shape)}, {tuple(group.shape)}.")


def pairwise_ranking_loss(pred: torch.Tensor, target: torch.Tensor, group: torch.Tensor,
                          margin: float = 0.0) -> torch.Tensor:
    """Per group: mean over pairs (i, j) of the group with ``target_i > target_j + margin`` of
    ``softplus(-(pred_i - pred_j))``. pred, target (N,) float; group (N,) long. Returns (G,) for the
    groups in ``group.unique()`` order, 0 for a group without such a pair.
    """
    _check(pred, target, group)
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}.")
    ids, inverse = group.unique(return_inverse=True)
    pairs = (inverse[:, None] == inverse[None, :]) & (target[:, None] > target[None, :] + margin)  # (N, N)
    loss = F.softplus(-(pred[:, None] - pred[None, :])) * pairs  # (N, N)
    per_group = torch.zeros(len(ids), device=pred.device, dtype=pred.dtype).index_add_(0, inverse, loss.sum(1))
    count = torch.zeros(len(ids), device=pred.device, dtype=pred.dtype).index_add_(0, inverse, pairs.sum(1).to(pred))
    return per_group / count.clamp_min(1.0)


def listwise_ranking_loss(pred: torch.Tensor, target: torch.Tensor, group: torch.Tensor,
                          tau: float = 0.1) -> torch.Tensor:
    """Per group: cross-entropy from ``softmax(target / tau)`` to ``softmax(pred)`` over the group's
    siblings. pred, target (N,) float; group (N,) long. Returns (G,) in ``group.unique()`` order.
    """
    _check(pred, target, group)
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}.")
    ids, inverse = group.unique(return_inverse=True)
    member = inverse[None, :] == torch.arange(len(ids), device=pred.device)[:, None]  # (G, N)
    neg = torch.finfo(pred.dtype).min
    log_p = torch.log_softmax(pred[None, :].masked_fill(~member, neg), dim=1)  # (G, N)
    q = torch.softmax((target[None, :] / tau).masked_fill(~member, neg), dim=1)  # (G, N)
    return -(q * log_p.masked_fill(~member, 0.0)).sum(1)
