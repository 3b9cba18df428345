"""The online per-operation correction (tap.planning.adapt): the closed form against a naive posterior, the
paired noise, and its effect inside the successive-halving search."""

from __future__ import annotations

import pytest
import torch

from tap.chains.edits import OP_IDS, Edit
from tap.env import Evaluation, ExampleResult
from tap.errors import TapError
from tap.planning.adapt import OpCorrection, paired_residual_noise
from tests.helpers import RuleLLM, arithmetic_task, tiny_world_model

ADD = Edit("instruction", "add_example", (0,))
FMT = Edit("instruction", "format_change")
TOK = Edit("token", "delete", (0, 0))


def _ev(correct: list[bool], uids: list[int] | None = None) -> Evaluation:
    uids = uids or list(range(len(correct)))
    return Evaluation([ExampleResult(u, "", "", c, True, float(c)) for u, c in zip(uids, correct)], 0, 0, "val",
                      "generate", 0)


def test_paired_change_and_noise():
    child, parent = _ev([True, True, False, True]), _ev([False, True, False, False])
    change, noise = paired_residual_noise(child, parent)
    assert change == pytest.approx(0.5)
    assert noise == pytest.approx(0.25 / 4)  # per-example differences (1, 0, 0, 1): variance 0.25, over 4
    same = paired_residual_noise(parent, parent)
    assert same == (0.0, pytest.approx(1 / 16))  # no discordant example: floored at 1/n, over n
    with pytest.raises(TapError, match="same examples"):
        paired_residual_noise(child, _ev([True] * 4, [9, 8, 7, 6]))


def test_posterior_matches_a_naive_gaussian_update():
    tau = 0.1
    c = OpCorrection(tau)
    obs = [((ADD,), 0.3, 0.01), ((ADD, TOK), 0.1, 0.02), ((TOK,), -0.2, 0.05), ((FMT, FMT), 0.05, 0.01)]
    for edits, r, v in obs:
        c.add(edits, r, v)
    d = max(OP_IDS.values()) + 1
    phi = torch.stack([c.features(e) for e, _, _ in obs])  # (4, D)
    noise = torch.tensor([v for *_, v in obs], dtype=torch.float64)
    y = torch.tensor([r for _, r, _ in obs], dtype=torch.float64)
    cov = torch.linalg.inv(torch.eye(d, dtype=torch.float64) / tau**2 + phi.T @ torch.diag(1 / noise) @ phi)
    mean = cov @ phi.T @ (y / noise)
    assert torch.allclose(c.weights(), mean)
    assert c.correct([(ADD,), (ADD, FMT)]) == pytest.approx([float(mean[ADD.op_id]),
                                                             float(mean[ADD.op_id] + mean[FMT.op_id])])
    assert set(c.summary()) == {"instruction.add_example", "token.delete", "instruction.format_change"}
    assert c.summary()["instruction.add_example"] > 0 > c.summary()["token.delete"]


def test_no_measurement_no_correction_and_shrinkage_with_evidence():
    c = OpCorrection(0.1)
    assert c.correct([(ADD,), (TOK,)]) == [0.0, 0.0] and c.summary() == {}
    c.add((ADD,), 0.5, 0.1)  # one noisy measurement: pulled most of the way back to 0
    weak = c.correct([(ADD,)])[0]
    for _ in range(50):
        c.add((ADD,), 0.5, 0.1)
    strong = c.correct([(ADD,)])[0]
    assert weak == pytest.approx(0.5 * 10 / (10 + 100))  # observation precision 1/0.1, prior 1/0.1^2
    assert strong == pytest.approx(0.5 * 510 / (510 + 100)) and weak < strong < 0.5
    assert c.correct([(TOK,)]) == [0.0]  # an operation never measured keeps the ranker's prediction
    with pytest.raises(TapError, match="tau"):
        OpCorrection(0.0)
    with pytest.raises(TapError, match="noise"):
        c.add((ADD,), 0.1, 0.0)


def _search(ranker, calls, **kw):
    from tap.planning.halving import SuccessiveHalvingSearch

    wm = tiny_world_model().eval()
    return SuccessiveHalvingSearch(RuleLLM(), arithmetic_task(60), None, 0, eval_examples=8, progress=False,
                                   budget_calls=calls, world_model=wm, ranker=ranker, menu=24, enter=4, **kw)


@pytest.mark.parametrize("ranker", ["model", "prior"])
def test_search_learns_the_correction_from_what_it_verifies(ranker):
    s = _search(ranker, 200, adapt=0.1)
    result = s.run()
    rounds = result.config["rounds"]
    assert len(rounds) >= 2 and "adapt" not in rounds[0]  # the first round ranks as meta-trained
    assert all("adapt" in r for r in rounds[1:])
    # one observation per entrant of every finished round, each at the highest rung it reached
    finished = [r for r in rounds if "verified" in r]
    assert s._correction.observations == sum(len(r["verified"]) for r in finished)
    measured_ops = {f"{e['scale']}.{e['op']}" for r in finished for v in r["verified"] for e in v["edits"]}
    assert set(rounds[-1]["adapt"]) <= measured_ops
    assert result.config["adapt"] == 0.1
    # deterministic, and no extra LLM call: adapting reads the incumbent's evaluations already paid
    assert result.costs["search"]["example_evals"] <= 200
    again = _search(ranker, 200, adapt=0.1).run()
    assert [r.chain for r in again.records] == [r.chain for r in result.records]


def test_adapt_needs_a_ranker_with_predictions():
    from tap.planning.halving import SuccessiveHalvingSearch

    with pytest.raises(TapError, match="adapt"):
        SuccessiveHalvingSearch(RuleLLM(), arithmetic_task(60), None, 0, eval_examples=8, progress=False,
                                budget_calls=50, ranker="random", adapt=0.1)
    with pytest.raises(TapError, match="adapt"):
        _search("model", 50, adapt=-1.0)


def test_spread_is_tau_before_any_measurement_and_shrinks_for_measured_operations():
    c = OpCorrection(0.1)
    assert c.spread([(ADD,), (TOK, FMT), (ADD, ADD, ADD, ADD)]) == pytest.approx([0.1, 0.1, 0.1])
    for _ in range(3):
        c.add((ADD,), 0.2, 0.01)
    sd = torch.linalg.inv(c.precision).diagonal().sqrt()
    assert sd[ADD.op_id] == pytest.approx((1 / (100 + 300)) ** 0.5)  # prior 1/0.1^2, three of precision 100
    add, tok, both = c.spread([(ADD,), (TOK,), (ADD, TOK)])
    assert add == pytest.approx(float(sd[ADD.op_id])) and tok == pytest.approx(0.1)
    assert both == pytest.approx((add + tok) / 2) and add < both < tok


def test_the_operation_bonus_leaves_the_first_round_and_explores_unmeasured_operations_after():
    plain = _search("prior", 300, adapt=0.1, hedge=False)
    bonus = _search("prior", 300, adapt=0.1, hedge=False, op_bonus=True)
    a, b = plain.run(), bonus.run()
    first = [[v["edits"] for v in r["verified"]] for r in (a.config["rounds"][0], b.config["rounds"][0])]
    assert first[0] == first[1]  # the same bonus for every candidate before anything is measured
    later = [v for r in b.config["rounds"][1:] for v in r.get("verified", [])]
    assert later and all(v["uncertainty"] > 0 for v in later)  # the prior's own uncertainty is 0
    assert b.config["op_bonus"] and b.costs["search"]["example_evals"] <= 300
    assert [r.chain for r in _search("prior", 300, adapt=0.1, hedge=False, op_bonus=True).run().records] == [
        r.chain for r in b.records]
    with pytest.raises(TapError, match="op_bonus .* needs adapt"):
        _search("prior", 50, op_bonus=True)


