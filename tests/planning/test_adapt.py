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


def _search(scorer, calls, **kw):
    from tap.planning.search import SuccessiveHalvingSearch

    wm = tiny_world_model().eval()
    return SuccessiveHalvingSearch(RuleLLM(), arithmetic_task(60), None, 0, eval_examples=8, progress=False,
                                   budget_calls=calls, world_model=wm, scorer=scorer, menu=24, enter=4, **kw)


@pytest.mark.parametrize("scorer", ["model", "prior"])
def test_search_learns_the_correction_from_what_it_verifies(scorer):
    s = _search(scorer, 200, adapt=0.1)
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
    again = _search(scorer, 200, adapt=0.1).run()
    assert [r.chain for r in again.records] == [r.chain for r in result.records]


def test_adapt_needs_a_ranker_with_predictions():
    from tap.planning.search import SuccessiveHalvingSearch

    with pytest.raises(TapError, match="adapt"):
        SuccessiveHalvingSearch(RuleLLM(), arithmetic_task(60), None, 0, eval_examples=8, progress=False,
                                budget_calls=50, scorer="random", adapt=0.1)
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


def test_an_imagined_measurement_shrinks_the_spread_of_its_operations_only():
    c = OpCorrection(0.1)
    c.add((TOK,), 0.1, 0.05)
    before = c.spread([(ADD,), (TOK,), (FMT,)])
    seen = c.imagined((ADD, ADD), 1 / 16)
    assert c.spread([(ADD,), (TOK,), (FMT,)]) == before  # the original is untouched
    add, tok, fmt = seen.spread([(ADD,), (TOK,), (FMT,)])
    assert add == pytest.approx((1 / (100 + 4 * 16)) ** 0.5)  # two edits of ADD: phi 2, precision 2^2 / noise
    assert tok == pytest.approx(before[1]) and fmt == pytest.approx(0.1)
    assert seen.observations == c.observations and torch.equal(seen.weighted, c.weighted)
    with pytest.raises(TapError, match="noise variance"):
        c.imagined((ADD,), 0.0)


def test_the_batch_bonus_spreads_the_ranked_picks_over_untried_operations():
    one_shot = _search("prior", 300, adapt=0.1, hedge=False, op_bonus=True, explore=0.0)
    batch = _search("prior", 300, adapt=0.1, hedge=False, op_bonus=True, batch_bonus=True, explore=0.0)
    # six candidates of one operation just ahead of two of another, nothing measured: the bonus is tau for all
    candidates = [(TOK,)] * 6 + [(FMT,)] * 2
    score, own = [0.0] * 6 + [-0.001] * 2, [0.0] * 8
    sigma = [0.1] * 8
    assert one_shot._acquire(score, sigma, 4, candidates, own) == [0, 1, 2, 3]  # every slot to one operation
    picks = batch._acquire(score, sigma, 4, candidates, own)
    assert picks[0] == 0 and 6 in picks  # the first pick as before; the next operation once the first is counted
    assert picks == [0, 6, 1, 7]  # each pick shrinks its operation's bonus below the other's: they alternate
    assert all(batch._pick_sigma[i] <= 0.1 + 1e-12 for i in picks)
    assert batch._pick_sigma[0] == pytest.approx(0.1)  # the first pick is made at the undiminished bonus
    with pytest.raises(TapError, match="batch_bonus .* needs op_bonus"):
        _search("prior", 50, adapt=0.1, batch_bonus=True)


@pytest.mark.parametrize("mix", [False, True])
def test_the_batch_bonus_keeps_the_budget_and_repeats_exactly(mix):
    # mix: the default's acquisition, composed plans taking a measured share of the ranked slots
    kw = dict(adapt=0.1, hedge=mix, op_bonus=True, **({"compose": 4, "compose_hedge": True} if mix else {}))
    a = _search("prior", 300, batch_bonus=True, **kw).run()
    assert a.config["batch_bonus"] and a.costs["search"]["example_evals"] <= 300
    first = a.config["rounds"][0]["verified"]
    plain = _search("prior", 300, **kw).run().config["rounds"][0]["verified"]
    assert first[0]["edits"] == plain[0]["edits"]  # the best UCB pick of a round is unchanged
    assert len(a.config["rounds"]) > 1 and all(len(r["verified"]) == 4 for r in a.config["rounds"][:-1])
    b = _search("prior", 300, batch_bonus=True, **kw).run()
    assert [r.chain for r in b.records] == [r.chain for r in a.records]


INSTR_A = Edit("instruction", "instruction_edit", (), "Answer with the sum.")
INSTR_B = Edit("instruction", "instruction_edit", (), "Add the two numbers.")


def test_edit_key_names_operation_and_payload_not_target():
    from tap.planning.adapt import edit_key

    assert edit_key(INSTR_A) != edit_key(INSTR_B)
    assert edit_key(Edit("token", "delete", (0, 0))) == edit_key(Edit("token", "delete", (1, 3)))


def test_edit_correction_is_the_gaussian_process_with_an_operation_and_an_edit_kernel():
    from tap.planning.adapt import EditCorrection, edit_key

    tau, tau_e = 0.1, 0.05
    c = EditCorrection(tau, tau_e)
    obs = [((INSTR_A,), 0.3, 0.01), ((INSTR_B,), -0.1, 0.02), ((INSTR_A, TOK), 0.2, 0.02), ((TOK,), -0.2, 0.05)]
    for edits, r, v in obs:
        c.add(edits, r, v)

    def k(x: tuple, y: tuple) -> float:  # sum over the edit pairs of the two candidates
        return sum(tau**2 * (a.op_id == b.op_id) + tau_e**2 * (edit_key(a) == edit_key(b)) for a in x for b in y)

    edits = [e for e, _, _ in obs]
    K = torch.tensor([[k(a, b) for b in edits] for a in edits], dtype=torch.float64)
    K += torch.diag(torch.tensor([v for *_, v in obs], dtype=torch.float64))
    alpha = torch.linalg.solve(K, torch.tensor([r for _, r, _ in obs], dtype=torch.float64))
    unseen = Edit("instruction", "instruction_edit", (), "Never measured.")
    queries = [(INSTR_A,), (INSTR_B,), (unseen,), (ADD,), (INSTR_A, TOK)]
    want = [float(torch.tensor([k(q, e) for e in edits], dtype=torch.float64) @ alpha) for q in queries]
    got = c.correct(queries)
    assert got == pytest.approx(want, abs=1e-10)
    assert got[0] > got[2] > got[1]  # inside one operation: the measured edits around their operation's level
    assert got[3] == 0.0  # an operation never measured: the ranker as meta-trained
    assert c.observations == 4 and set(c.summary()) == {"instruction.instruction_edit", "token.delete"}
    # the record holds the joint posterior's operation departures: Cov(w_op, y_i) = tau^2 x (op's count in i)
    op_weight = tau**2 * sum(sum(e.op_id == INSTR_A.op_id for e in x) * a for x, a in zip(edits, alpha.tolist()))
    assert c.summary(digits=8)["instruction.instruction_edit"] == pytest.approx(op_weight, abs=1e-8)
    with pytest.raises(TapError, match="tau_edit"):
        EditCorrection(0.1, 0.0)


def test_search_with_the_edit_correction_runs_repeats_and_records_it():
    from tap.planning.adapt import EditCorrection

    s = _search("prior", 200, adapt=0.1, adapt_edit=0.1)
    result = s.run()
    assert isinstance(s._correction, EditCorrection) and s._correction.observations > 0
    assert result.config["adapt_edit"] == 0.1 and result.costs["search"]["example_evals"] <= 200
    again = _search("prior", 200, adapt=0.1, adapt_edit=0.1).run()
    assert [r.chain for r in again.records] == [r.chain for r in result.records]
    with pytest.raises(TapError, match="adapt_edit"):
        _search("prior", 50, adapt_edit=0.1)  # without the per-operation correction
    with pytest.raises(TapError, match="adapt_edit"):
        _search("prior", 50, adapt=0.1, adapt_edit=-0.1)


def test_plan_config_refuses_the_edit_correction_without_adapt():
    from tap.planning import PlanConfig

    PlanConfig(method="prior-sh", adapt_edit=0.1).check()
    with pytest.raises(TapError, match="adapt_edit"):
        PlanConfig(method="random-sh", adapt_edit=0.1).check()
    with pytest.raises(TapError, match="adapt_edit"):
        PlanConfig(method="prior-sh", adapt=0.0, adapt_edit=0.1).check()
