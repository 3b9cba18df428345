"""The sibling-ranking noise ceiling on hand-made groups: tie-aware ranks, per-group and pooled rho judged on the
second half, shares of the in-data ceiling (a scorer equal to the first half reads 1), the bootstrap and the
recorded command."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from torchmetrics.functional import spearman_corrcoef

from tests.helpers import import_benchmark


@pytest.fixture(scope="module")
def sc():
    return import_benchmark("sibling_ceiling")


def _data(seed: int = 0, groups: int = 24) -> dict:
    """``groups`` groups of six siblings over two tasks; the halves share a true effect, plus noise."""
    g = torch.Generator().manual_seed(seed)
    n = groups * 6
    true = torch.randn(n, generator=g)
    half_a = ((true + torch.randn(n, generator=g)) * 4).round() / 16  # discrete, like accuracy on 16 examples
    half_b = ((true + torch.randn(n, generator=g)) * 4).round() / 16
    group = torch.arange(groups).repeat_interleave(6)
    return {"model": half_a.clone(), "prior": torch.zeros(n), "half_a": half_a, "half_b": half_b,
            "real": (half_a + half_b) / 2, "group": group, "task": (group >= groups // 2).long(),
            "names": ["ii:first_word_letter", "ii:rhymes"]}


def test_average_ranks_and_spearman_match_torchmetrics_with_ties(sc):
    x = torch.tensor([[3.0, 1.0, 1.0, 2.0], [0.0, 0.0, 0.0, 1.0]])
    assert sc.average_ranks(x).tolist() == [[4.0, 1.5, 1.5, 3.0], [2.0, 2.0, 2.0, 4.0]]
    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 4, (3, 60), generator=g).double()
    b = a + torch.randint(0, 5, (3, 60), generator=g).double()
    got = sc.spearman_rows(a, b)
    want = torch.stack([spearman_corrcoef(a[i].float(), b[i].float()) for i in range(3)]).double()
    assert torch.allclose(got, want, atol=1e-5)
    assert sc.spearman_rows(torch.ones(1, 5).double(), b[:1, :5]).isnan().all()  # a constant row has no rho


def test_a_scorer_equal_to_the_first_half_reads_the_ceiling(sc):
    p = _data()
    r = sc.read_outs(p)
    assert r["names"] == ["first_word_letter", "rhymes"]
    assert r["model"]["sib_half"] == pytest.approx(r["ceiling"]["sib_half"], nan_ok=True)
    assert r["model"]["edit_half"] == pytest.approx(r["ceiling"]["edit_half"])
    assert all(v == 0 or v != v for v in r["prior"]["sib_half"])  # a constant score counts 0 (NaN: no order)
    summary = sc.family_summary([r], {"first_word_letter": 0.8})
    assert summary["model"]["sib_share"] == pytest.approx([1.0])
    assert summary["model"]["edit_share"] == pytest.approx([1.0])
    assert summary["prior"]["sib_share"] == pytest.approx([0.0])
    # the older convention reads only the tasks with a ceiling from other edits: one here
    assert summary["model"]["edit_old_share"] == pytest.approx([r["model"]["edit_all"][0] / 0.8])
    c = summary["ceiling"]["sib_half"]["first_word_letter"]
    sib_all = torch.tensor(r["model"]["sib_all"][:12])
    assert summary["model"]["sib_step_share"][0] == pytest.approx(
        (float(sib_all.nanmean()) / (2 * c / (1 + c)) + _step_share(r, summary, "rhymes")) / 2)


def _step_share(r: dict, summary: dict, task: str) -> float:
    c = summary["ceiling"]["sib_half"][task]
    return float(torch.tensor(r["model"]["sib_all"][12:]).nanmean()) / (2 * c / (1 + c))


def test_a_reversed_scorer_reads_a_negative_share_and_the_bootstrap_brackets_the_estimate(sc):
    p = _data(seed=2, groups=40)
    r = sc.read_outs(p)
    r["_model"], r["_prior"] = p["model"], p["prior"]
    rev = sc.read_outs(p | {"model": -p["half_a"]})
    rev["_model"], rev["_prior"] = -p["half_a"], p["prior"]
    s = sc.family_summary([rev], {})
    assert s["model"]["sib_share"] == pytest.approx([-1.0]) and s["model"]["edit_share"] == pytest.approx([-1.0])
    ci = sc.bootstrap([r], p, draws=200, seed=0)
    assert ci["model/sib"][0] <= 1.0 <= ci["model/sib"][1] and ci["model/sib"][1] - ci["model/sib"][0] < 1e-9
    assert ci["prior/sib"] == pytest.approx((0.0, 0.0))
    two = sc.bootstrap([r, rev], p, draws=200, seed=0)  # per-group rho averaged over the seeds: 0
    assert two["model/sib"] == pytest.approx((0.0, 0.0), abs=1e-9)
    again = sc.bootstrap([r, rev], p, draws=200, seed=0)  # seeded: the same draws
    assert all(again[k] == two[k] for k in ("model/sib", "model/edit", "prior/sib"))


def test_sibling_share_skips_unordered_groups_and_tasks_without_a_positive_ceiling(sc):
    num = torch.tensor([0.2, 0.4, 0.9, 0.3], dtype=torch.float64)
    den = torch.tensor([0.4, 0.4, float("nan"), -0.2], dtype=torch.float64)
    gt = torch.tensor([0, 0, 0, 1])
    assert sc.sibling_share(num, den, gt, 2) == pytest.approx(0.75)  # task 1's ceiling is negative: left out
    assert sc.sibling_share(num[3:], den[3:], gt[3:], 2) != sc.sibling_share(num[3:], den[3:], gt[3:], 2)  # NaN


def test_command_records_every_option_not_at_its_default_and_draws_are_checked(sc):
    root = Path(sc.__file__).resolve().parents[1]
    args = argparse.Namespace(tags=["hierarchical-transfer"], data=root / "configs" / "data" / "ii_transfer.yaml",
                              samples=[0, 1], draws=500, out=sc.OUT)
    assert sc.command(args, [0, 1]) == ("python benchmarks/sibling_ceiling.py --tags hierarchical-transfer "
                                        "--samples 0 1 --draws 500")
    with pytest.raises(SystemExit, match="at least 100 draws"):
        sc.main(["--tags", "x", "--draws", "10"])
