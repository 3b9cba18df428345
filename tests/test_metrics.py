import math

import torch

from tap.metrics import GroupedRankAgreement


def test_grouped_rank_agreement_overall_and_per_group():
    m = GroupedRankAgreement()
    pred = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.9, 0.8, 0.7])
    real = torch.tensor([0.0, 0.1, 0.2, 0.3, 0.1, 0.2, 0.3])
    group = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    m.update(pred[:3], real[:3], group[:3])  # accumulates across updates
    m.update(pred[3:], real[3:], group[3:])
    out = m.compute()
    assert abs(out["spearman/0"].item() - 1) < 1e-5 and abs(out["spearman/1"].item() + 1) < 1e-5
    assert abs(out["mae"].item() - (pred - real).abs().mean().item()) < 1e-6
    assert out["n"].item() == 7
    m.reset()
    assert m.compute() == {}


def test_constant_or_tiny_groups_give_nan():
    m = GroupedRankAgreement()
    m.update(torch.tensor([0.5, 0.5, 0.5, 1.0, 2.0]), torch.tensor([0.1, 0.2, 0.3, 1.0, 2.0]),
             torch.tensor([0, 0, 0, 1, 1]))
    out = m.compute()
    assert math.isnan(out["spearman/0"].item()) and math.isnan(out["spearman/1"].item())
