"""The sibling ranking terms against naive loops, and the selection-gain metric on hand-made cases."""

import math

import pytest
import torch

from tap.losses.ranking import listwise_ranking_loss, pairwise_ranking_loss
from tap.metrics import SelectionGain


def _groups():
    g = torch.Generator().manual_seed(0)
    group = torch.tensor([0, 0, 0, 3, 3, 7, 7, 7, 7])
    target = torch.tensor([0.1, 0.5, 0.5, 0.0, 0.25, 0.3, 0.1, 0.9, 0.3])
    return torch.randn(9, generator=g), target, group


def test_pairwise_against_a_naive_loop():
    pred, target, group = _groups()
    for margin in (0.0, 0.15):
        want = []
        for gid in group.unique().tolist():
            idx = [i for i in range(9) if group[i] == gid]
            terms = [math.log1p(math.exp(-(pred[i] - pred[j]).item())) for i in idx for j in idx
                     if target[i] > target[j] + margin]
            want.append(sum(terms) / len(terms) if terms else 0.0)
        assert pairwise_ranking_loss(pred, target, group, margin).tolist() == pytest.approx(want, rel=1e-5)


def test_listwise_against_a_naive_loop():
    pred, target, group = _groups()
    want = []
    for gid in group.unique().tolist():
        idx = [i for i in range(9) if group[i] == gid]
        q = torch.softmax(target[idx] / 0.1, 0)
        want.append(-(q * torch.log_softmax(pred[idx], 0)).sum().item())
    assert listwise_ranking_loss(pred, target, group, tau=0.1).tolist() == pytest.approx(want, rel=1e-5)


def test_ranking_losses_prefer_the_right_order_and_have_gradients():
    target = torch.tensor([0.0, 0.2, 0.6])
    group = torch.zeros(3, dtype=torch.long)
    right, wrong = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([2.0, 1.0, 0.0])
    for fn in (pairwise_ranking_loss, listwise_ranking_loss):
        assert fn(right, target, group) < fn(wrong, target, group)
        pred = wrong.clone().requires_grad_()
        fn(pred, target, group).sum().backward()
        assert pred.grad is not None and pred.grad[2] < 0 < pred.grad[0]  # push the best up, the worst down


def test_ranking_losses_reject_bad_input():
    with pytest.raises(ValueError, match="1-D and alike"):
        pairwise_ranking_loss(torch.zeros(3), torch.zeros(4), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="tau must be positive"):
        listwise_ranking_loss(torch.zeros(3), torch.zeros(3), torch.zeros(3, dtype=torch.long), tau=0)
    with pytest.raises(ValueError, match="margin"):
        pairwise_ranking_loss(torch.zeros(3), torch.zeros(3), torch.zeros(3, dtype=torch.long), margin=-1)


def test_selection_gain_on_hand_made_cases():
    group = torch.tensor([0, 0, 0, 1, 1, 1])
    d_eval = torch.tensor([0.0, 0.3, 0.6, 0.5, 0.1, 0.0])
    d_oracle = torch.tensor([0.0, 0.2, 0.4, 0.3, 0.2, 0.0])  # an independent evaluation that ranks alike
    m = SelectionGain()
    m.update(d_oracle, d_eval, d_oracle, group)  # a model that ranks like the oracle
    assert m.compute()["gain"].item() == pytest.approx(1.0)
    m.reset()
    m.update(-d_oracle, d_eval, d_oracle, group)  # reversed: picks the worst
    out = m.compute()
    assert out["gain"].item() < 0 and out["groups"].item() == 2
    m.reset()
    m.update(torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0, 0.0]), d_eval, d_oracle, group)  # middle picks
    out = m.compute()
    assert out["model"].item() == pytest.approx(((0.3 - 0.3) + (0.1 - 0.2)) / 2)
    assert out["oracle"].item() == pytest.approx(((0.6 - 0.3) + (0.5 - 0.2)) / 2)
    m.reset()
    assert m.compute() == {}
