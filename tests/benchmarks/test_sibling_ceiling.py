"""The sibling-ranking noise ceiling on hand-made groups: tie-aware ranks, per-group and pooled rho judged on the
second half, shares of the in-data ceiling (a scorer equal to the first half reads 1), the bootstrap and the
recorded command."""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import pytest
import torch
from torchmetrics.functional import spearman_corrcoef

from tap.chains import Chain
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


def test_the_gap_to_the_prior_is_paired_per_seed_and_per_draw(sc):
    p = _data(seed=3, groups=40)
    p["prior"] = p["half_a"] + torch.randn(len(p["half_a"]), generator=torch.Generator().manual_seed(9))
    runs = []
    for noise in (0.5, 2.0):  # two seeds of a "model": the first half plus noise
        noisy = p["half_a"] + noise * torch.randn(len(p["half_a"]), generator=torch.Generator().manual_seed(1))
        q = p | {"model": noisy}
        r = sc.read_outs(q)
        r["_model"], r["_prior"] = q["model"], q["prior"]
        runs.append(r)
    s = sc.family_summary(runs, {"first_word_letter": 0.8, "rhymes": 0.7})
    for k in ("sib_share", "edit_share", "sib_step_share", "edit_old_share"):
        assert s["gap"][k] == pytest.approx([m - s["prior"][k][0] for m in s["model"][k]])
    ci = sc.bootstrap(runs, p, draws=300, seed=0)
    assert ci["gap/sib"][0] < ci["gap/sib"][1]
    # paired: narrower than the two shares' intervals put side by side
    side_by_side = (ci["model/sib"][1] - ci["prior/sib"][0]) - (ci["model/sib"][0] - ci["prior/sib"][1])
    assert ci["gap/sib"][1] - ci["gap/sib"][0] < side_by_side
    # a model that scores as its prior does is level with it on every draw, whatever the draw
    same = sc.read_outs(p | {"model": p["prior"]})
    same["_model"], same["_prior"] = p["prior"], p["prior"]
    tie = sc.bootstrap([same], p, draws=300, seed=0)
    assert tie["gap/sib"] == pytest.approx((0.0, 0.0), abs=1e-12)
    assert tie["gap/edit"] == pytest.approx((0.0, 0.0), abs=1e-12)
    assert tie["model/sib"][1] - tie["model/sib"][0] > 0.01
    text = sc.report({"fam": s}, {"fam": ci}, [0], 40)
    assert "| fam | model − prior (paired) |" in text


def test_sibling_share_skips_unordered_groups_and_tasks_without_a_positive_ceiling(sc):
    num = torch.tensor([0.2, 0.4, 0.9, 0.3], dtype=torch.float64)
    den = torch.tensor([0.4, 0.4, float("nan"), -0.2], dtype=torch.float64)
    gt = torch.tensor([0, 0, 0, 1])
    assert sc.sibling_share(num, den, gt, 2) == pytest.approx(0.75)  # task 1's ceiling is negative: left out
    assert sc.sibling_share(num[3:], den[3:], gt[3:], 2) != sc.sibling_share(num[3:], den[3:], gt[3:], 2)  # NaN


def test_command_records_every_option_not_at_its_default_and_draws_are_checked(sc):
    root = Path(sc.__file__).resolve().parents[1]
    args = argparse.Namespace(tags=["hierarchical-transfer"], data=root / "configs" / "data" / "ii_transfer.yaml",
                              samples=[0, 1], draws=500, extend=0, out=sc.OUT)
    assert sc.command(args, [0, 1]) == ("python benchmarks/sibling_ceiling.py --tags hierarchical-transfer "
                                        "--samples 0 1 --draws 500")
    args.extend, args.out = 32, sc.OUT.with_name("ceiling32.json")
    assert sc.command(args, [3]).endswith("--samples 3 --draws 500 --extend 32")  # its default --out
    with pytest.raises(SystemExit, match="at least 100 draws"):
        sc.main(["--tags", "x", "--draws", "10"])


def _collected_groups(task, llm, groups: int = 2) -> list[list[dict]]:
    """Sibling groups as collection stores them (parent and child chains, the first 32 search examples and each
    chain's correctness there), evaluated with ``llm``."""
    from tap.chains import apply_edit, edit_space, initial_chain
    from tap.env import Environment
    from tap.llm.base import GenerationSettings

    env = Environment(llm, task, mode="auto", generation=GenerationSettings(max_new_tokens=24), eval_examples=32)
    first = env.order[:32]
    rng = random.Random(0)
    parent = initial_chain(task.description)
    out = []
    for _ in range(groups):
        edits = edit_space(task).propose(parent, 3, rng)
        base = [r.correct for r in env.evaluate(parent, first).results]
        rows = []
        for e in edits:
            child = apply_edit(parent, e)
            rows.append({"task": task.name, "sample": 0, "chain": parent.to_json(), "next_chain": child.to_json(),
                         "example_uids": [ex.uid for ex in first], "correct": base,
                         "next_correct": [r.correct for r in env.evaluate(child, first).results]})
        out.append(rows)
        parent = apply_edit(parent, edits[0])
    return out


def test_extend_checks_the_stored_examples_then_evaluates_new_ones_and_resumes(sc, tmp_path, monkeypatch):
    import tap.tasks
    from tap.env import Environment
    from tap.llm.base import GenerationSettings
    from tests.helpers import RuleLLM, arithmetic_task

    task = arithmetic_task(200)
    monkeypatch.setattr(tap.tasks, "load_task", lambda name, seed=0: task)
    llm = RuleLLM()
    groups = _collected_groups(task, llm)
    out = sc.extend(groups, 8, llm, out_dir=tmp_path)
    env = Environment(llm, task, mode="auto", generation=GenerationSettings(max_new_tokens=24), eval_examples=32)
    for g in groups:
        for r in g:
            want = [x.correct for x in env.evaluate(Chain.from_json(r["next_chain"]), env.order[32:40]).results]
            assert out[sc.chain_key(r["next_chain"])] == want
    saved = list(tmp_path.glob("*-s0-n8.json"))
    assert len(saved) == 1 and len(json.loads(saved[0].read_text())) == len(out)

    class Spent(RuleLLM):
        def generate(self, *a, **k):
            raise AssertionError("a resumed extension evaluated again")

        score = generate

    assert sc.extend(groups, 8, Spent(), out_dir=tmp_path) == out  # resumed from its file: nothing evaluated
    # the judged halves at 32: A = the stored change, B = the change on the new examples
    p = {"real": torch.tensor([0.5, 0.25]), "model": torch.zeros(2)}
    q = sc.extended_predictions(p, [[groups[0][0]], [groups[0][1]]], out)
    assert torch.equal(q["half_a"], p["real"].double()) and q["model"] is p["model"]
    r0 = groups[0][0]
    new0 = sum(out[sc.chain_key(r0["next_chain"])]) / 8 - sum(out[sc.chain_key(r0["chain"])]) / 8
    assert float(q["half_b"][0]) == pytest.approx(new0)


def test_extend_stops_when_the_collection_does_not_reproduce(sc, tmp_path, monkeypatch):
    import tap.tasks
    from tests.helpers import RuleLLM, arithmetic_task

    task = arithmetic_task(200)
    monkeypatch.setattr(tap.tasks, "load_task", lambda name, seed=0: task)
    llm = RuleLLM()
    groups = _collected_groups(task, llm, groups=1)
    tampered = [[dict(groups[0][0], next_correct=[not c for c in groups[0][0]["next_correct"]]), *groups[0][1:]]]
    with pytest.raises(SystemExit, match="did not reproduce"):
        sc.extend(tampered, 8, llm, out_dir=tmp_path / "a")
    shifted = [[dict(r, example_uids=r["example_uids"][::-1]) for r in groups[0]]]
    with pytest.raises(SystemExit, match="not this environment's first 32"):
        sc.extend(shifted, 8, llm, out_dir=tmp_path / "b")
    with pytest.raises(SystemExit, match="fewer than 32"):
        sc.extend(groups, 10_000, llm, out_dir=tmp_path / "c")
