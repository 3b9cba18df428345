"""The online ranking benchmark on hand-made sibling groups: the draws of observed groups, the first-half noise,
and the Gaussian-process read-outs (a per-operation shift, the same edit's record, a feature kernel)."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import import_benchmark


@pytest.fixture(scope="module")
def orank():
    return import_benchmark("online_rank")


@pytest.fixture(scope="module")
def wo():
    return import_benchmark("within_op")


def _half(score: torch.Tensor, p: dict) -> list[float]:
    """Same-operation concordance judged on the second half, as ``online_rank`` reads it."""
    return import_benchmark("within_op").within_op_pairs(score, p, judge="half_b").tolist()


def _cell(n_groups: int = 4) -> dict:
    """One task's cell of ``n_groups`` groups; each has two op-0 siblings (payloads A, B) and one op-1 sibling.
    On this task B beats A by 0.2 in every group; op 1 sits 0.1 below the prior. Features: A and B far apart.
    """
    p: dict = {k: [] for k in ("prior", "op", "feat", "half_a", "noise_a", "half_b", "group")}
    p["key"], p["cell"] = [], []
    for g in range(n_groups):
        for key, op, delta, feat in (("A", 0, 0.0, [1.0, 0.0]), ("B", 0, 0.2, [0.0, 1.0]), ("C", 1, -0.1, [1.0, 1.0])):
            p["prior"].append(0.0)
            p["op"].append(op)
            p["feat"].append(feat)
            p["half_a"].append(delta)
            p["half_b"].append(delta)
            p["noise_a"].append(1e-4)
            p["group"].append(g)
            p["key"].append(f"op{op}|{key}")
            p["cell"].append(("ii:t", 0))
    out = {k: torch.tensor(v, dtype=torch.float64) for k, v in p.items() if k not in ("key", "cell")}
    out["op"], out["group"] = out["op"].long(), out["group"].long()
    return out | {"key": p["key"], "cell": p["cell"]}


def test_draws_take_other_groups_of_the_same_cell_and_repeat(orank):
    p = _cell(5)
    p["cell"] = [("ii:t", 0)] * 9 + [("ii:u", 0)] * 6  # groups 0-2 in one cell, 3-4 in another
    d = orank.draws(p, 1)
    assert all(len(v) == 1 and gid not in v for gid, v in d.items())
    assert set(d[0] + d[1] + d[2]) <= {0, 1, 2} and d[3] == [4] and d[4] == [3]
    assert d == orank.draws(p, 1)  # fixed per (k, group)
    assert orank.draws(p, 10)[0] == [1, 2]  # more than the cell holds: all the others


def test_half_noise_is_the_paired_variance_over_n_floored(wo):
    correct = torch.zeros(2, 2, 4)
    correct[0, 1, :2] = torch.tensor([1.0, 0.0])  # first half: differences 1, 0 -> mean 0.5, variance 0.25
    mask = torch.ones(2, 4, dtype=torch.bool)
    noise = wo.half_noise(correct, mask)
    assert noise[0].item() == pytest.approx(max(0.25, 0.5) / 2)  # floored at 1/n = 0.5, over n = 2
    assert noise[1].item() == pytest.approx(0.5 / 2)  # no difference: the floor


def test_nothing_observed_leaves_the_prior(orank):
    p = _cell(1)
    for kind in orank.KERNELS:
        assert torch.equal(orank.online_scores(p, 2, kind), p["prior"])


def test_op_shift_moves_operations_and_leaves_their_siblings_tied(orank):
    p = _cell()
    s = orank.online_scores(p, 3, "op")
    assert s[0] == s[1] and s[0] > s[2]  # op 0 (mean +0.1) above op 1 (-0.1); A and B tied
    assert _half(s, p) == [0.5] * 4


def test_payload_record_and_feature_kernel_order_inside_an_operation(orank):
    p = _cell()
    for kind in ("payload", "wm"):
        s = orank.online_scores(p, 3, kind)
        assert _half(s, p) == [1.0] * 4, kind  # B above A in every group
    # an edit never observed keeps its operation's level under the payload kernel
    p["key"][3:6] = ["op0|X", "op0|Y", "op1|C"]
    s = orank.online_scores(p, 3, "payload")
    assert s[3] == s[4]


def test_read_outs_judge_on_the_second_half_and_report_pairs(orank):
    p = _cell()
    res = orank.read_outs(p, [3], 0.1, 0.1)["3"]
    assert res["prior"]["gain"] == pytest.approx(0.0)  # every sibling tied: the group mean
    assert res["prior+oracle"]["gain"] == pytest.approx(1.0)
    assert res["prior+op+payload"]["gain"] == pytest.approx(1.0)
    assert res["prior+op"]["gain"] == pytest.approx(0.5 * (0.0 + 0.2 - 2 * 0.1 / 3) / (0.2 - 0.1 / 3))
    text = orank.report({"fam-s0": {"3": res}, "fam-s1": {"3": res}}, [3])
    assert "prior+op+wm − prior+op+payload" in text and "### k = 3" in text


def test_recorded_command_names_every_option_not_at_its_default(orank):
    import argparse
    from pathlib import Path

    args = argparse.Namespace(tags=["fam"], samples=[0, 1], k=[2, 8], tau_op=0.1, tau_v=0.05, out=orank.OUT)
    assert orank.command(args) == "python benchmarks/online_rank.py --tags fam --samples 0 1 --k 2 8 --tau-v 0.05"
    args.out = Path("/tmp/x.json")
    assert orank.command(args).endswith("--out /tmp/x.json")


def test_bad_settings_are_named(orank):
    with pytest.raises(SystemExit, match="--k"):
        orank.main(["--tags", "fam", "--k", "-1"])
    with pytest.raises(ValueError, match="unknown kernel"):
        orank.kernel(_cell(), torch.tensor([0]), torch.tensor([1]), "cosine", 1.0)
