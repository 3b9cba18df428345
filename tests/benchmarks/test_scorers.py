"""The scorer benchmark on hand-made data: the per-operation table, the shrinkage, and the report's choice and
pre-registered rules."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import import_benchmark


@pytest.fixture(scope="module")
def sc():
    return import_benchmark("scorers")


def _row(op: int, acc: float, dense: float) -> dict:
    return {"op_id": op, "reward": 0.5, "next_reward": 0.5 + acc, "dense": 0.2, "next_dense": 0.2 + dense}


def test_op_table_counts_dense_means_and_accuracy_variance(sc):
    rows = [_row(0, 0.1, 0.3), _row(0, 0.3, 0.1), _row(1, 0.2, -0.4)]
    t = sc.op_table(rows)
    assert t["dense"][0] == pytest.approx(0.2) and t["dense"][1] == pytest.approx(-0.4)
    assert t["tau2"][0] == pytest.approx(0.02)  # sample variance of 0.1 and 0.3
    assert t["tau2"][1] == 0 and t["tau2"][2] == 0 and t["dense"][2] == 0  # one edit; none


def test_shrink_trusts_the_model_by_its_precision(sc):
    prior, model = torch.tensor([0.0, 0.0, 0.0, 0.0]), torch.tensor([1.0, 1.0, 1.0, 1.0])
    out = sc.shrink(prior, model, torch.tensor([1.0, 0.0, 3.0, 1.0]), torch.tensor([1.0, 1.0, 1.0, 0.0]))
    assert out.tolist() == pytest.approx([0.5, 1.0, 0.1, 0.0])  # equal; exact model; noisy model; exact prior


def _predictions(model_right: bool) -> dict:
    """Two groups of three siblings in one task; halves equal; the prior ties everything."""
    real = torch.tensor([0.0, 0.2, -0.1, 0.2, 0.0, -0.1], dtype=torch.float64)
    good = real.clone() if model_right else -real
    p = {s: torch.zeros(6, dtype=torch.float64) for s in ("prior", "prior-dense", "shrunk")}
    p |= {"model": good, "model-dense": -good, "half_a": real, "half_b": real, "real": real,
          "group": torch.tensor([0, 0, 0, 1, 1, 1]), "task": torch.zeros(6, dtype=torch.long), "names": ["ii:rhymes"]}
    return p


def test_read_outs_and_report_choose_on_validation_and_pair_on_transfer(sc):
    right, wrong = sc.read_outs(_predictions(True)), sc.read_outs(_predictions(False))
    assert right["model"]["gain"] == pytest.approx(1.0) and right["model-dense"]["gain"] < 0
    assert right["prior"]["gain"] == pytest.approx(0.0)  # a pick tied among all counts as their mean
    runs = {f"fam-s{s}": {"val": right, "transfer": right} for s in (0, 1)}
    text = sc.report(runs)
    assert "candidate `model`, baseline `prior`" in text
    assert "R1 (`model` − `prior`): +1.000 ± 0.000 over seeds (+1.00, +1.00), **met**; +1.000 ± 0.000 over 2 groups, " \
           "**met**" in text
    # chosen on validation, where model-dense looks best, and wrong on the transfer set: the rule fails
    flipped = {f"fam-s{s}": {"val": wrong, "transfer": right} for s in (0, 1)}
    text = sc.report(flipped)
    assert "candidate `model-dense`" in text and "**not met**" in text
    # the default scorer's reading is listed whatever validation chose
    assert "The default read-out, whatever validation chose: `model` − `prior`: +1.000 ± 0.000 over seeds" in text


def test_recorded_command_names_the_transfer_set_only_when_it_is_not_the_default(sc):
    import argparse

    args = argparse.Namespace(tags=["w"], transfer=sc.TRANSFER, transfer_seeds=[0, 1, 2], out=sc.OUT)
    assert sc.command(args) == ("python benchmarks/scorers.py --tags w --transfer-seeds 0 1 2 "
                                "--out benchmarks/results/scorers/scorers.json")
    args.transfer = sc.ROOT / "configs" / "data" / "ii_transfer_qwen.yaml"
    args.transfer_seeds = [2]
    assert sc.command(args) == ("python benchmarks/scorers.py --tags w --transfer configs/data/ii_transfer_qwen.yaml "
                                "--transfer-seeds 2 --out benchmarks/results/scorers/scorers.json")


def test_families_are_paired_with_the_first_one_seed_for_seed_and_group_for_group(sc):
    right, wrong = sc.read_outs(_predictions(True)), sc.read_outs(_predictions(False))
    assert "Between families" not in sc.report({f"fam-s{s}": {"val": right, "transfer": right} for s in (0, 1)})
    runs = {"base-s0": {"val": wrong, "transfer": wrong}, "base-s1": {"val": wrong, "transfer": wrong},
            "new-s0": {"val": right, "transfer": right}, "new-s1": {"val": right, "transfer": right},
            "new-s2": {"val": right, "transfer": right}, "odd-s7": {"val": right, "transfer": right}}
    text = sc.report(runs)
    gap = right["model"]["task_mean"] - wrong["model"]["task_mean"]
    assert gap > 0
    assert f"- **new** − **base** (seeds 0, 1): {gap:+.3f} ± 0.000 over seeds ({gap:+.2f}, {gap:+.2f}), **met**" in text
    assert "- **odd** − **base**: no seed in common" in text
    flipped = sc.between({"new-s0": runs["base-s0"], "base-s0": runs["new-s0"]})  # the reference is the first given
    assert f"- **base** − **new** (seeds 0): {gap:+.3f}" in "\n".join(flipped)


def test_report_only_needs_no_tags_and_a_run_without_them_is_refused(sc, tmp_path, capsys):
    import json

    right = sc.read_outs(_predictions(True))
    out = tmp_path / "s.json"
    out.write_text(json.dumps({"runs": {"fam-s0": {"val": right, "transfer": right}}}))
    sc.main(["--report-only", "--out", str(out)])
    assert "candidate `model`" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        sc.main(["--out", str(out)])
    assert "--tags is required" in capsys.readouterr().err
