"""The within-operation benchmark's scorers and read-outs on hand-made sibling groups: lexicographic order,
selection gain with ties split evenly, and same-operation pair concordance."""

from __future__ import annotations

import json

import pytest
import torch

from tests.helpers import import_benchmark


@pytest.fixture(scope="module")
def wo():
    return import_benchmark("within_op")


def _groups() -> dict[str, torch.Tensor]:
    """Two groups of three siblings; ops 0, 0, 1 in each; the prior ties the two op-0 siblings."""
    return {"prior": torch.tensor([0.1, 0.1, 0.0, 0.1, 0.1, 0.0]), "op": torch.tensor([0, 0, 1, 0, 0, 1]),
            "model": torch.tensor([0.0, 5.0, 9.0, 3.0, 1.0, 9.0]),
            "prompt": torch.tensor([40.0, 10.0, 500.0, 40.0, 10.0, 500.0]),  # right in group 1, wrong in group 0
            "payload": torch.tensor([0.1, 0.1, 0.0, 0.1, 0.1, 0.0]), "seen": torch.zeros(6, dtype=torch.bool),
            "relevance": torch.zeros(6, dtype=torch.float64),
            "real": torch.tensor([0.0, 0.2, -0.1, 0.2, 0.0, -0.1]),
            "half_a": torch.tensor([0.0, 0.2, -0.1, 0.2, 0.0, -0.1]),
            "half_b": torch.tensor([0.0, 0.2, -0.1, 0.2, 0.0, -0.1]),
            "group": torch.tensor([0, 0, 0, 1, 1, 1]), "task": torch.zeros(6, dtype=torch.long)}


def test_lexicographic_orders_by_primary_and_breaks_only_its_ties(wo):
    primary = torch.tensor([0.1, 0.1, 0.0, 0.3])
    out = wo.lexicographic(primary, torch.tensor([2.0, -1.0, 100.0, -100.0]))
    assert out.argsort().tolist() == [2, 1, 0, 3]  # the secondary's 100 cannot lift a lower primary
    tied = wo.lexicographic(primary, torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert tied[0] == tied[1]  # the secondary's own ties stay ties


def test_gain_splits_ties_and_lexicographic_uses_the_model_inside_them(wo):
    p = _groups()
    s = wo.scores(p)
    prior, oracle = wo.group_gains(s["prior"], p)
    # prior: a tie between 0.0 and 0.2 counts as 0.1, the group mean is 0.1/3
    assert prior.tolist() == pytest.approx([0.1 - 0.1 / 3] * 2)
    assert oracle.tolist() == pytest.approx([0.2 - 0.1 / 3] * 2)
    lexi, _ = wo.group_gains(s["lexicographic"], p)
    assert lexi.tolist() == pytest.approx([0.2 - 0.1 / 3] * 2)  # the model orders both ties right
    model, _ = wo.group_gains(s["model"], p)
    assert model.tolist() == pytest.approx([-0.1 - 0.1 / 3] * 2)  # alone it picks the op-1 sibling


def test_within_op_pairs_count_only_same_op_pairs_that_differ(wo):
    p = _groups()
    s = wo.scores(p)
    assert wo.within_op_pairs(s["prior"], p).tolist() == [0.5, 0.5]
    assert wo.within_op_pairs(s["lexicographic"], p).tolist() == [1.0, 1.0]
    reversed_model = wo.lexicographic(p["prior"], -p["model"])
    assert wo.within_op_pairs(reversed_model, p).tolist() == [0.0, 0.0]


def test_report_pairs_lexicographic_against_prior_per_seed(wo):
    p = _groups()
    p["names"] = ["ii:rhymes"]
    runs = {f"fam-s{seed}": wo.read_outs(p) for seed in (0, 1)}
    text = wo.report(runs)
    assert "| fam | lexicographic | 2 | 1.00 ± 0.00 |" in text
    assert "lexicographic − prior selection gain 0.600 ± 0.000 over seeds" in text


def test_prompt_tie_break_orders_only_inside_the_priors_ties(wo):
    p = _groups()
    s = wo.scores(p)
    gains, _ = wo.group_gains(s["prior+prompt"], p)
    # group 0: the longer op-0 edit is the worse one (0.0); group 1: the better one (0.2); op 1's 500 never wins
    assert gains.tolist() == pytest.approx([0.0 - 0.1 / 3, 0.2 - 0.1 / 3])
    assert wo.within_op_pairs(s["prior+prompt"], p).tolist() == [0.0, 1.0]


def test_report_pairs_every_tie_break_against_the_prior(wo):
    p = _groups()
    p["names"] = ["ii:rhymes"]
    text = wo.report({f"fam-s{seed}": wo.read_outs(p) for seed in (0, 1)})
    # per group −0.1 and +0.1 against the prior, over the oracle's 0.2 − 0.1/3: ±0.6, level on average
    assert "prior+prompt − prior selection gain 0.000 ± 0.000 over seeds, +0.000 ± 7.624 over 2 groups" in text
    assert "| fam | prior+prompt | 2 |" in text
    # within-op: each pair averaged over the two seeds, so 2 pairs (not 4), the interval over them
    row = next(line for line in text.splitlines() if line.startswith("| fam | prior+prompt |"))
    assert row.endswith("| 0.500 ± 6.353 (2) |")


def test_recorded_command_names_every_option_not_at_its_default(wo):
    import argparse

    args = argparse.Namespace(tags=["w"], data=wo.ROOT / "configs" / "data" / "ii_transfer.yaml", tasks=None,
                              samples=None, split="test", out=wo.OUT)
    assert wo.command(args, [0, 1, 2]) == "python benchmarks/within_op.py --tags w"
    args = argparse.Namespace(tags=["w"], data=wo.ROOT / "configs" / "data" / "ii_pool_wide.yaml", tasks=["ii:diff"],
                              samples=[3], split="train", out=wo.ROOT / "benchmarks" / "results" / "x.json")
    assert wo.command(args, [3]) == ("python benchmarks/within_op.py --tags w --data configs/data/ii_pool_wide.yaml "
                                     "--tasks ii:diff --samples 3 --split train --out benchmarks/results/x.json")


def test_payload_record_counts_the_same_edit_and_falls_back_to_the_operation(wo):
    def row(op, payload, before, after):
        return {"edit": json.dumps({"op": op, "payload": payload, "scale": "token", "target": [0]}),
                "reward": before, "next_reward": after}

    rows = [row("add", "count", 0.0, 0.5), row("add", "count", 0.2, 0.3), row("add", "all", 0.1, 0.0),
            row("add_example", {"uid": 3, "input": "a", "output": "b"}, 0.0, 1.0)]
    table = wo.payload_table(rows)
    assert table[wo.payload_key(rows[0]["edit"])] == pytest.approx((0.6, 2))
    # the payload's key ignores where the edit lands and the dict's key order
    assert wo.payload_key(json.dumps({"op": "add_example", "payload": {"output": "b", "input": "a", "uid": 3},
                                      "target": [5]})) == wo.payload_key(rows[3]["edit"])
    keys = [wo.payload_key(rows[0]["edit"]), wo.payload_key(rows[2]["edit"]), 'add|"never"']
    out = wo.payload_scores(keys, torch.tensor([0.3, 0.3, 0.3]), table)
    # (sum + op mean) / (n + 1): one pseudo-count of the operation's mean; an unseen payload keeps that mean
    assert out.tolist() == pytest.approx([(0.6 + 0.3) / 3, (-0.1 + 0.3) / 2, 0.3])


def test_payload_tie_break_orders_only_inside_the_priors_ties(wo):
    p = _groups()
    p["payload"] = torch.tensor([0.0, 0.9, 5.0, 0.9, 0.0, 5.0])  # right in both groups; op 1's 5.0 never wins
    p["seen"] = torch.tensor([True, True, False, True, True, False])
    s = wo.scores(p)
    gains, _ = wo.group_gains(s["prior+payload"], p)
    assert gains.tolist() == pytest.approx([0.2 - 0.1 / 3, 0.2 - 0.1 / 3])
    assert wo.within_op_pairs(s["prior+payload"], p).tolist() == [1.0, 1.0]
    p["names"] = ["ii:rhymes"]
    assert "payload occurred in training for 66.7% of the siblings" in wo.report({"fam-s0": wo.read_outs(p)})


class _Letters(torch.nn.Module):
    """A text backbone for tests: counts of a few letters, so closeness in its space is checkable by hand."""

    def forward(self, texts: list[str]) -> torch.Tensor:
        return torch.tensor([[t.count(c) + 0.01 for c in "xyz"] for t in texts])


def _row(instruction: str, child_instruction: str, pairs: list[str]) -> dict:
    from tap.chains.chain import Chain

    parent = Chain(instruction=instruction)
    child = Chain(instruction=child_instruction)
    return {"chain": parent.to_json(), "next_chain": child.to_json(), "task_pairs": pairs}


def test_relevance_scores_the_edit_that_brings_the_prompt_closer_to_the_task_pairs(wo):
    rel = wo.Relevance(text=_Letters())
    pairs = ["Input: xx\nOutput: x", "Input: x\nOutput: xxx"]  # the task reads as 'x'
    rows = [_row("xy", "xx", pairs), _row("xy", "yy", pairs), _row("xy", "xy", pairs)]
    out = rel(rows)
    # cosines to the task's direction (~x): 'xx' ~1, 'xy' ~0.71, 'yy' ~0
    assert out[0].item() == pytest.approx(1 - 2**-0.5, abs=0.02)
    assert out[1].item() == pytest.approx(-(2**-0.5), abs=0.02)
    assert out[2].item() == 0.0  # no change of text, no change of relevance
    # the parent's term is shared within a group: the children's difference does not depend on it
    other = rel([_row("zz", "xx", pairs), _row("zz", "yy", pairs)])
    assert (other[0] - other[1]).item() == pytest.approx((out[0] - out[1]).item())
    with pytest.raises(SystemExit, match="task_pairs > 0"):
        rel([_row("yy", "xx", [])])


def test_relevance_tie_break_orders_only_inside_the_priors_ties(wo):
    p = _groups()
    p["relevance"] = torch.tensor([-1.0, 2.0, 9.0, 2.0, -1.0, 9.0], dtype=torch.float64)  # op 1's 9 never wins
    s = wo.scores(p)
    gains, _ = wo.group_gains(s["prior+relevance"], p)
    assert gains.tolist() == pytest.approx([0.2 - 0.1 / 3, 0.2 - 0.1 / 3])
    assert wo.within_op_pairs(s["prior+relevance"], p).tolist() == [1.0, 1.0]
    p["names"] = ["ii:rhymes"]
    assert "prior+relevance − prior selection gain" in wo.report({"fam-s0": wo.read_outs(p)})
