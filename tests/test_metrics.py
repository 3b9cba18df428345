import math

import pytest
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


def test_selection_gain_per_task():
    from tap.metrics import SelectionGain

    group = torch.tensor([0, 0, 1, 1])
    task = torch.tensor([0, 0, 1, 1])
    d = torch.tensor([0.0, 1.0, 0.0, 1.0])
    m = SelectionGain()
    m.update(torch.tensor([0.0, 1.0, 1.0, 0.0]), d, d, group, task)  # right on task 0, wrong on task 1
    out = m.compute()
    assert out["gain/0"].item() == pytest.approx(1.0) and out["gain/1"].item() == pytest.approx(-1.0)
    assert out["gain"].item() == pytest.approx(0.0)


def test_selection_gain_splits_ties_evenly():
    """A pick tied between siblings counts as their mean, whatever order they are listed in (model and oracle)."""
    from tap.metrics import SelectionGain

    d = torch.tensor([0.0, 0.2, 1.0, 0.0])  # group mean 0.3
    group = torch.zeros(4, dtype=torch.long)
    for order in (torch.arange(4), torch.tensor([3, 2, 1, 0])):
        m = SelectionGain()
        # model ties siblings 0 and 2 (pick worth 0.5); the oracle ties 1 and 2 (pick worth 0.6)
        m.update(torch.tensor([1.0, 0.0, 1.0, 0.0])[order], d[order], torch.tensor([0.0, 5.0, 5.0, 0.0])[order],
                 group)
        out = m.compute()
        assert out["model"].item() == pytest.approx(0.2) and out["oracle"].item() == pytest.approx(0.3)
        assert out["gain"].item() == pytest.approx(2 / 3)
    m = SelectionGain()
    m.update(torch.zeros(4), d, d, group)  # a ranker that ties everything is random: gain 0
    assert m.compute()["gain"].item() == pytest.approx(0.0)


def test_sibling_rank_agreement_is_within_groups():
    from tap.metrics import SiblingRankAgreement

    # within each group the prediction orders siblings perfectly, but the groups' levels are reversed:
    # a pooled Spearman would be poor, the within-group one is 1
    pred = torch.tensor([10.0, 11.0, 12.0, 0.0, 1.0, 2.0])
    target = torch.tensor([0.0, 0.1, 0.2, 0.5, 0.6, 0.7])
    group = torch.tensor([0, 0, 0, 1, 1, 1])
    task = torch.tensor([0, 0, 0, 1, 1, 1])
    m = SiblingRankAgreement()
    m.update(pred, target, group, task)
    out = m.compute()
    assert out["spearman"].item() == pytest.approx(1.0, abs=1e-4) and out["groups"].item() == 2
    m.reset()
    m.update(-pred, target, group, task)
    assert m.compute()["spearman"].item() == pytest.approx(-1.0, abs=1e-4)
    m.reset()
    m.update(pred, torch.tensor([0.0, 0.0, 0.0, 0.5, 0.6, 0.7]), group, task)  # group 0 has no order: skipped
    out = m.compute()
    assert out["groups"].item() == 1 and torch.isnan(out["spearman/0"])


def test_group_rhos_per_group_with_the_metric_rules():
    from tap.metrics import SiblingRankAgreement

    group = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3])
    pred = torch.tensor([1.0, 2.0, 3.0, 5.0, 5.0, 5.0, 3.0, 2.0, 1.0, 0.0])
    target = torch.tensor([0.0, 0.1, 0.2, 0.0, 0.1, 0.2, 0.3, 0.3, 0.3, 0.0])
    rhos = SiblingRankAgreement.group_rhos(pred, target, group)
    # ordered as measured; a constant score counts 0; equal targets and a lone sibling have no order (NaN)
    assert rhos[:2].tolist() == pytest.approx([1.0, 0.0], abs=1e-5) and rhos[2:].isnan().all()
    # ties are ranked by their mean rank, as scipy does: a naive Pearson of the average ranks
    p2, t2 = torch.tensor([1.0, 1.0, 2.0, 3.0]), torch.tensor([0.1, 0.3, 0.2, 0.4])
    rp, rt = torch.tensor([1.5, 1.5, 3.0, 4.0]), torch.tensor([1.0, 3.0, 2.0, 4.0])
    naive = torch.corrcoef(torch.stack([rp, rt]))[0, 1]
    assert SiblingRankAgreement.group_rhos(p2, t2, torch.zeros(4, dtype=torch.long)).item() == pytest.approx(
        naive.item(), abs=1e-5)
    m = SiblingRankAgreement()
    m.update(pred, target, group, torch.zeros(10, dtype=torch.long))
    assert m.compute()["spearman"].item() == pytest.approx(0.5, abs=1e-5)  # the mean of the defined ones


def test_ceiling_shares_per_task_and_mean():
    from tap.systems.world_model import ceiling_shares

    ranker = {"spearman": torch.tensor(0.3), "spearman/0": torch.tensor(0.2), "spearman/1": torch.tensor(0.4),
              "spearman/2": torch.tensor(0.1), "spearman/3": torch.tensor(float("nan")), "groups": torch.tensor(9.0)}
    ceiling = {"spearman": torch.tensor(0.5), "spearman/0": torch.tensor(0.4), "spearman/1": torch.tensor(0.5),
               "spearman/2": torch.tensor(-0.1), "spearman/3": torch.tensor(0.6)}
    out = ceiling_shares(ranker, ceiling)
    # task 2's ceiling is not positive (no share to read) and task 3's ranker is undefined: both left out
    assert set(out) == {"share", "share/0", "share/1"}
    assert out["share/0"].item() == pytest.approx(0.5) and out["share/1"].item() == pytest.approx(0.8)
    assert out["share"].item() == pytest.approx(0.65)
    assert ceiling_shares({"spearman/0": torch.tensor(0.2)}, {})["share"].isnan()


def test_interval_calibration_coverage_spearman_and_conformal_scale():
    from tap.metrics import IntervalCalibration, normal_quantile

    assert normal_quantile(0.8) == pytest.approx(1.2816, abs=1e-4)
    g = torch.Generator().manual_seed(0)
    n = 4000
    std = torch.rand(n, generator=g) + 0.1
    target = torch.randn(n, generator=g) * std  # errors really are N(0, std): calibrated
    task = torch.zeros(n, dtype=torch.long)
    m = IntervalCalibration(0.8)
    m.update(torch.zeros(n), std, target, task)
    out = m.compute()
    assert out["coverage"].item() == pytest.approx(0.8, abs=0.02) and out["spearman"].item() > 0.3
    assert m.conformal_scale() == pytest.approx(1.0, abs=0.05)
    m.reset()
    m.update(torch.zeros(n), std / 4, target, task)  # four times overconfident
    assert m.compute()["coverage"].item() < 0.4
    scale = m.conformal_scale()
    assert scale == pytest.approx(4.0, rel=0.05)
    assert m.compute(scale=scale)["coverage"].item() == pytest.approx(0.8, abs=0.01)
    with pytest.raises(ValueError, match="coverage"):
        IntervalCalibration(1.0)
