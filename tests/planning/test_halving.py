"""TaP's successive-halving search under every ranker on a rule-based fake LLM: budgets in both
units, no test leakage, the halving and the acceptance, the acquisition, nesting and determinism."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from tap.chains.edits import apply_edit
from tap.env import Evaluation, ExampleResult
from tap.errors import BudgetExhausted, TapError
from tap.planning.halving import SuccessiveHalvingSearch, halving_rungs, planning_cost, random_sh, sign_test
from tap.search import SearchRecord, search_key
from tests.helpers import RuleLLM, arithmetic_task, tiny_world_model

RANKERS_TESTED = ("model", "prior", "random")


@pytest.fixture(scope="module")
def task():
    return arithmetic_task(60)


@pytest.fixture(scope="module")
def wm():
    return tiny_world_model().eval()


def _search(task, wm, ranker="model", budget=None, calls=None, seed=0, llm=None, **kw):
    kw = {"menu": 24, "enter": 4, "eval_examples": 8, **kw}
    return SuccessiveHalvingSearch(llm or RuleLLM(), task, budget, seed, progress=False,
                                   budget_calls=calls, world_model=None if ranker == "random" else wm,
                                   ranker=ranker, **kw)


def _strip(result) -> dict:
    """The result without its wall-clock times (the only thing a seed does not fix)."""
    d = copy.deepcopy(result.to_dict())
    d["costs"]["search"].pop("seconds")
    d["costs"].pop("planning")
    for r in d["config"]["rounds"]:
        r.pop("planning_seconds")
    return d


def test_planning_cost_is_measured_per_round_against_a_real_evaluation(task, wm):
    result = _search(task, wm, "model", calls=97).run()
    plan = result.costs["planning"]
    rounds = result.config["rounds"]
    assert plan["rounds"] == len(rounds) > 0 and all(r["planning_seconds"] >= 0 for r in rounds)
    assert plan["seconds"] == pytest.approx(sum(r["planning_seconds"] for r in rounds), abs=1e-3)
    assert plan["ratio"] is not None and plan["ratio"] >= 0
    # the arithmetic: 2 rounds of 0.1 s; 10 s of search with 0.2 s of planning over 64 example evaluations of 8
    cost = planning_cost([{"planning_seconds": 0.1}] * 2, {"example_evals": 64, "seconds": 10.0}, 8)
    assert cost["per_round"] == pytest.approx(0.1) and cost["full_evaluation_seconds"] == pytest.approx(9.8 / 8)
    assert cost["ratio"] == pytest.approx(0.1 / (9.8 / 8), abs=1e-4)


def test_halving_rungs():
    assert halving_rungs(32) == (4, 8, 16, 32)
    assert halving_rungs(16) == (4, 8, 16) and halving_rungs(8) == (4, 8) and halving_rungs(5) == (5,)
    assert halving_rungs(12) == (6, 12)
    with pytest.raises(TapError):
        halving_rungs(0)


@pytest.mark.parametrize("ranker", RANKERS_TESTED)
@pytest.mark.parametrize("calls", [9, 30, 97])
def test_call_and_chain_budgets_are_never_exceeded(task, wm, ranker, calls):
    llm = RuleLLM()
    result = _search(task, wm, ranker, calls=calls, llm=llm).run()
    search = result.costs["search"]
    assert search["example_evals"] <= calls and all(r.calls <= calls for r in result.records)
    pairs = {(json.dumps(r.chain, sort_keys=True), i) for r in result.records for i in range(r.examples)}
    assert len(pairs) == search["example_evals"]  # each (chain, example) pair paid once
    assert search["example_evals"] > calls - 8  # it spends what it is given
    both = _search(task, wm, ranker, budget=3, calls=calls).run()
    assert both.costs["search"]["chain_evals"] <= 3 + 1e-9 and both.costs["search"]["example_evals"] <= calls
    prompts = [p for b in llm.generate_batches for p in b] + [p for b in llm.score_batches for p, _ in b]
    assert not any(ex.input in p for ex in task.test for p in prompts)  # test is never read


@pytest.mark.parametrize("ranker", RANKERS_TESTED)
def test_budget_c_is_the_first_c_calls_of_a_longer_run(task, wm, ranker):
    long = _search(task, wm, ranker, calls=120, seed=1).run()
    for c in (20, 57):
        short = _search(task, wm, ranker, calls=c, seed=1).run()
        chain, edits, acc = long.best_at(calls=c)
        assert short.final_chain == chain and short.edits == edits and short.final_search["accuracy"] == acc


@pytest.mark.parametrize("ranker", RANKERS_TESTED)
def test_deterministic_under_a_seed_and_replayable(task, wm, ranker):
    a, b = _search(task, wm, ranker, calls=80, seed=3).run(), _search(task, wm, ranker, calls=80, seed=3).run()
    assert _strip(a) == _strip(b)
    a.check_replay()
    assert a.method == {"model": "tap-model", "prior": "tap", "random": "random-sh"}[ranker]
    rounds = a.config["rounds"]
    assert rounds and all(r["menu"] >= r["entrants"] for r in rounds)
    if ranker != "random":
        assert all(r.predicted is not None for r in a.records[1:])  # every verification says what was predicted


def _fake_eval(acc: float, n: int) -> Evaluation:
    results = [ExampleResult(i, "", "", i < round(acc * n), True, acc) for i in range(n)]
    return Evaluation(results, 0, 0, "val", "generate", 0)


def test_successive_halving_promotes_the_best_half_on_each_rung(task, wm, monkeypatch):
    s = _search(task, wm, "random", calls=10_000, rungs=(2, 4, 8))
    quality = {}  # chain json -> accuracy at every rung
    seen: list[tuple[str, int]] = []

    def fake_evaluate(chain, edits, n=None, note="", predicted=None, uncertainty=None):
        seen.append((chain.to_json(), n))
        return _fake_eval(quality[chain.to_json()], n)

    monkeypatch.setattr(s, "evaluate", fake_evaluate)
    menu = s._menu(s.start)[:8]
    for i, (_, chain) in enumerate(menu):
        quality[chain.to_json()] = [0.1, 0.9, 0.3, 0.8, 0.2, 0.7, 0.0, 0.6][i]
    s._halve(s.start, [], menu, list(range(8)), [0.0] * 8, [0.0] * 8)
    by_rung = {n: [c for c, m in seen if m == n] for n in (2, 4, 8)}
    key = {c.to_json(): i for i, (_, c) in enumerate(menu)}
    assert sorted(key[c] for c in by_rung[2]) == list(range(8))
    assert sorted(key[c] for c in by_rung[4]) == [1, 3, 5, 7]  # the better half: 0.9, 0.8, 0.7, 0.6
    assert sorted(key[c] for c in by_rung[8]) == [1, 3]


def test_acceptance_is_on_the_same_examples_at_the_top_rung(task, wm):
    result = _search(task, wm, "random", calls=200, seed=2).run()
    full = 8
    accepted = [r for r in result.records if r.accepted]
    assert accepted[0].note == "initial" and all(r.examples == full for r in accepted)  # only full evaluations
    # every accepted chain beat the one held before it on the same (first full) examples
    for before, after in zip(accepted, accepted[1:]):
        assert (after.accuracy, after.dense) > (before.accuracy, before.dense)
    assert any(r.examples < full for r in result.records)  # lower rungs were used, and never accepted


def test_acquisition_follows_the_uncertainty_when_beta_dominates(task, wm):
    s = _search(task, wm, "model", calls=100, beta=100.0, explore=0.0, enter=2)
    score = [0.5, 0.4, 0.0, 0.1, 0.2]
    sigma = [0.0, 0.0, 0.3, 0.01, 0.2]
    assert s._acquire(score, sigma) == [2, 4]
    s.beta = 0.0
    assert s._acquire(score, sigma) == [0, 1]
    s.explore, s.enter = 0.5, 4
    picks = s._acquire(score, sigma)
    assert picks[:2] == [0, 1] and len(set(picks)) == 4  # half by the rule, half drawn from the rest


def test_imagination_scores_every_candidate_and_plans(task, wm):
    s = _search(task, wm, "model", calls=100, plans=0.5)
    menu = s._menu(s.start)
    assert any(len(e) == 2 for e, _ in menu) and any(len(e) == 1 for e, _ in menu)
    assert len({c.to_json() for _, c in menu}) == len(menu)
    score, sigma = s._imagine(s.start, menu)
    assert len(score) == len(sigma) == len(menu) and all(x >= 0 for x in sigma)
    assert len(set(score)) > 1  # the model tells candidates apart


def test_bad_settings_are_named(task, wm):
    with pytest.raises(TapError, match="needs a world model"):
        _search(task, None, "model", calls=10)
    with pytest.raises(TapError, match="unknown ranker"):
        _search(task, wm, "best", calls=10)
    with pytest.raises(TapError, match="rungs"):
        _search(task, wm, "random", calls=10, rungs=(4, 6))
    with pytest.raises(TapError, match="compose_hedge"):
        _search(task, wm, "prior", calls=10, compose_hedge=True)
    with pytest.raises(TapError, match="scores single edits.*set compose=0"):
        _search(task, wm, "gradient", calls=10, compose=4)
    assert random_sh(RuleLLM(), task, None, 0, budget_calls=10, progress=False).name == "random-sh"
    assert search_key(_fake_eval(0.5, 4)) == (0.5, 0.5)


def test_fluency_weight_steers_the_acquisition_and_is_counted_apart(task, wm):
    from tap.chains.fluency import chain_text

    s = _search(task, wm, "prior", calls=100, fluency_weight=1000.0, beta=0.0, explore=0.0, enter=3)
    menu = s._menu(s.start)
    score = s._add_fluency(s.start, menu, [0.0] * len(menu))
    picks = s._acquire(score, [0.0] * len(menu))
    fl = [s._fluency[chain_text(c)] for _, c in menu]
    assert sorted(fl[i] for i in picks) == sorted(fl)[-3:]  # the most fluent candidates
    result = _search(task, wm, "prior", calls=60, fluency_weight=1.0).run()
    assert result.costs["fluency"]["requests"] > 0
    assert result.costs["search"]["example_evals"] <= 60  # scoring texts is not charged to the search budget


def test_gradient_and_policy_rank_single_edits_inside_the_same_search(task):
    import torch

    wm = tiny_world_model(seed=1).eval()
    with torch.no_grad():  # nudge the zero-initialised heads, so that the planner's returns differ
        for p in wm.net.parameters():
            p.add_(0.05 * torch.randn_like(p))

    class FakePolicy:  # what the search asks of an imagination policy
        world_model = wm

        def actor_logits(self, features, actions):
            return actions.sum(-1)  # (1, K)

    for ranker, extra in (("gradient", {}), ("policy", {"policy": FakePolicy()})):
        s = _search(task, None if ranker == "policy" else wm, ranker, calls=60, **extra)
        assert s.plans == 0.0 and s.name == f"tap-{ranker}"
        menu = s._menu(s.start)
        assert all(len(e) == 1 for e, _ in menu)
        score, sigma = s._imagine(s.start, menu)
        assert len(score) == len(menu) and set(sigma) == {0.0} and len(set(score)) > 1
        if ranker == "policy":
            actions, _ = wm.embed_edits([e[0] for e, _ in menu])
            assert score == pytest.approx(actions.sum(-1).tolist())
        def make(ranker=ranker, extra=extra):
            return _search(task, None if ranker == "policy" else wm, ranker, calls=60, **extra)

        result = make().run()  # a fresh search: the one above drew a menu from its random stream
        assert result.costs["search"]["example_evals"] <= 60 and result.method == f"tap-{ranker}"
        assert _strip(make().run()) == _strip(result)
    with pytest.raises(TapError, match="imagination-policy"):
        _search(task, wm, "policy", calls=10)
    assert torch.is_tensor(wm.op_delta)


def test_hedge_measures_ranked_against_random_entrants_on_the_first_rung(task, wm):
    result = _search(task, wm, "prior", calls=400, seed=2, hedge=True).run()
    rounds = result.config["rounds"]
    assert len(rounds) > 2 and result.costs["search"]["example_evals"] <= 400
    result.check_replay()
    assert rounds[0]["hedge"]["ranked"] == rounds[0]["hedge"]["random"] == 0
    for k, r in enumerate(rounds[1:], 1):
        # every entrant of the rounds before was measured once, on the first rung, as ranked or random
        assert r["hedge"]["ranked"] + r["hedge"]["random"] == sum(p["entrants"] for p in rounds[:k])
        assert 1 <= r["random_entrants"] <= r["entrants"] - 1
    again = _search(task, wm, "prior", calls=400, seed=2, hedge=True).run()
    assert _strip(result) == _strip(again)
    plain = _search(task, wm, "prior", calls=400, seed=2).run()
    assert all("hedge" not in r and r["random_entrants"] == 0 for r in plain.config["rounds"])  # off: explore's
    # share of 4 entrants (round(0.5) = 0); hedging keeps one of each so that both stay measured


def test_hedge_hands_the_slots_of_a_misleading_ranker_to_random_draws(task, wm):
    s = _search(task, wm, "prior", calls=10_000, hedge=True, enter=8)
    score, sigma = [float(-i) for i in range(24)], [0.0] * 24
    assert sorted(s._source[i] for i in s._acquire(score, sigma)).count("random") == 1  # no evidence: explore
    for _ in range(8):
        s._skill.add("ranked", -0.25)
        s._skill.add("random", 0.25)
    picks = s._acquire(score, sigma)
    assert [s._source[i] for i in picks].count("ranked") == 1 and picks[0] == 0  # the ranker keeps its top pick
    with pytest.raises(TapError, match="hedge"):
        _search(task, wm, "random", calls=10, hedge=True)
    with pytest.raises(TapError, match="hedge"):
        _search(task, wm, "prior", calls=10, hedge=True, enter=1)


def test_composed_plans_take_the_rankers_best_single_edits_in_rank_order(task, wm):
    s = _search(task, wm, "prior", calls=10_000, compose=3, enter=4)
    menu = s._menu(s.start)
    singles = [i for i, (edits, _) in enumerate(menu) if len(edits) == 1]
    score = [0.0] * len(menu)
    for rank, i in enumerate(reversed(singles)):  # the ranker prefers the menu's last single edits
        score[i] = float(len(singles) - rank)
    composed = s._composed(s.start, menu, score)
    assert 1 <= len(composed) <= 4
    order = [menu[i][0][0] for i in reversed(singles)]
    used = [e for edits, _ in composed for e in edits]
    assert all(len(edits) == 3 for edits, _ in composed) and len(set(map(repr, used))) == len(used)  # disjoint
    assert [order.index(e) for e in used] == sorted(order.index(e) for e in used)  # taken in rank order
    assert order.index(used[0]) == 0  # the best single edit leads the first plan
    menu_chains = {c.to_json() for _, c in menu}
    for edits, chain in composed:
        expected = s.start
        for e in edits:
            expected = apply_edit(expected, e)
        assert chain == expected and chain.to_json() not in menu_chains
    # the prior scores a composed plan as every other plan: the sum of its edits' operation priors
    prior = wm.op_prior(torch.tensor([e.op_id for e in used])).tolist()
    assert s._rank(s.start, composed)[0] == pytest.approx([sum(prior[3 * k: 3 * k + 3]) for k in range(len(composed))])


@pytest.mark.parametrize("ranker", RANKERS_TESTED)
def test_a_search_with_composed_plans_verifies_them_within_budget_and_repeats(task, wm, ranker):
    result = _search(task, wm, ranker, calls=200, seed=1, compose=2).run()
    rounds = result.config["rounds"]
    assert result.costs["search"]["example_evals"] <= 200 and all(r["composed"] >= 1 for r in rounds)
    assert all(r["menu"] <= 24 + 4 for r in rounds)  # the menu and at most one composed plan per entrant
    result.check_replay()
    assert _strip(result) == _strip(_search(task, wm, ranker, calls=200, seed=1, compose=2).run())
    plain = _search(task, wm, ranker, calls=200, seed=1).run()
    assert all(r["composed"] == 0 for r in plain.config["rounds"])
    with pytest.raises(TapError, match="compose"):
        _search(task, wm, "gradient", calls=10, compose=2)
    with pytest.raises(TapError, match="compose"):
        _search(task, wm, "prior", calls=10, compose=-1)


def test_compose_hedge_gives_composed_plans_the_share_they_earn(task, wm):
    s = _search(task, wm, "prior", calls=10_000, hedge=True, compose=2, compose_hedge=True, enter=8)
    s._n_composed = 4  # the menu's last 4 are composed plans; the ranker scores them highest
    score, sigma = [float(-i) for i in range(20)] + [100.0, 99.0, 98.0, 97.0], [0.0] * 24
    picks = s._acquire(score, sigma)
    sources = [s._source[i] for i in picks]
    assert sources.count("composed") == 1 and sources.count("random") == 1  # no evidence: one of each
    assert picks[:6] == [0, 1, 2, 3, 4, 5] and 20 in picks  # the best plain picks and the best composed plan
    assert all(i < 20 for i, src in s._source.items() if src == "random")  # random draws stay plain
    for _ in range(8):  # composed plans measured far better than the ranker's other picks
        s._weigh("composed", 0.5)
        s._weigh("ranked", 0.0)
        s._weigh("random", 0.0)
    sources = [s._source[i] for i in s._acquire(score, sigma)]
    assert sources.count("composed") == 4 and sources.count("ranked") >= 1  # all 4 on the menu; one plain stays
    assert s._skill.gains["ranked"] == [0.5, 0.0] * 8  # to the ranked-vs-random hedge, composed is ranked
    worse = _search(task, wm, "prior", calls=10_000, hedge=True, compose=2, compose_hedge=True, enter=8)
    worse._n_composed = 4
    for _ in range(8):
        worse._weigh("composed", -0.5)
        worse._weigh("ranked", 0.25)
    assert [worse._source[i] for i in worse._acquire(score, sigma)].count("composed") == 1  # the floor of one


def test_a_search_with_compose_hedge_records_the_shares_and_repeats(task, wm):
    result = _search(task, wm, "prior", calls=300, seed=3, hedge=True, compose=2, compose_hedge=True).run()
    rounds = result.config["rounds"]
    assert result.costs["search"]["example_evals"] <= 300 and len(rounds) > 2
    result.check_replay()
    assert rounds[0]["compose_hedge"]["ranked"] == rounds[0]["compose_hedge"]["composed"] == 0
    assert rounds[0]["compose_hedge"]["entrants"] == 1  # enter 4: 2 ranked, 1 composed, 1 random
    for k, r in enumerate(rounds[1:], 1):  # every non-random entrant before was weighed once
        c = r["compose_hedge"]
        assert c["ranked"] + c["composed"] == sum(p["entrants"] - p["random_entrants"] for p in rounds[:k])
    assert _strip(result) == _strip(_search(task, wm, "prior", calls=300, seed=3, hedge=True, compose=2,
                                            compose_hedge=True).run())
    for bad in ({"compose": 0, "compose_hedge": True}, {"compose": 2, "compose_hedge": True, "enter": 2}):
        with pytest.raises(TapError, match="compose_hedge"):
            _search(task, wm, "prior", calls=10, **bad)
    with pytest.raises(TapError, match="compose_hedge"):
        _search(task, wm, "random", calls=10, compose=2, compose_hedge=True)


def _results(correct: str) -> Evaluation:
    """An evaluation from a string of 0/1, one per example (uids 0, 1, ...)."""
    results = [ExampleResult(i, "", "", c == "1", True, float(c)) for i, c in enumerate(correct)]
    return Evaluation(results, 0, 0, "val", "generate", 0)


def test_sign_test_on_hand_made_cases():
    assert sign_test(_results("11111000"), _results("00000000")) == (5, 0, 1 / 32)
    wins, losses, p = sign_test(_results("1110"), _results("0101"))  # ties (examples 1 and 2 right / wrong) dropped
    assert (wins, losses) == (2, 1) and p == pytest.approx(4 / 8)
    assert sign_test(_results("1010"), _results("1010")) == (0, 0, 1.0)  # nothing untied: no evidence
    assert sign_test(_results("0000"), _results("1111"))[2] == 1.0
    with pytest.raises(TapError, match="same examples"):
        sign_test(_results("11"), _results("111"))


def _race_setup(task, wm, monkeypatch, early_accept):
    s = _search(task, wm, "random", calls=10_000, rungs=(2, 4, 8), early_accept=early_accept)
    s.best_eval = _results("0" * 8)  # the incumbent gets nothing right
    menu = s._menu(s.start)[:4]
    quality = {c.to_json(): q for (_, c), q in zip(menu, ["00000000", "11111111", "10100000", "11000000"])}
    seen: list[tuple[int, int]] = []
    key = {c.to_json(): i for i, (_, c) in enumerate(menu)}

    def fake_evaluate(chain, edits, n=None, note="", predicted=None, uncertainty=None):
        seen.append((key[chain.to_json()], n))
        ev = _results(quality[chain.to_json()][:n])
        s.records.append(SearchRecord(0.0, chain.to_dict(), [], n, ev.accuracy, ev.dense, note))
        return ev

    monkeypatch.setattr(s, "evaluate", fake_evaluate)
    monkeypatch.setattr(s, "_incumbent_at", lambda parent, n: _results("0" * n))
    verified = s._halve(s.start, [], menu, list(range(4)), [0.0] * 4, [0.0] * 4)
    return s, menu, seen, verified


def test_early_acceptance_races_a_decisive_winner_and_ends_the_round(task, wm, monkeypatch):
    # at level 0.1: 2 of 2 (p 0.25) is not enough, 4 of 4 (p 0.0625) is: accepted at rung 4, rung 8 never paid
    s, menu, seen, verified = _race_setup(task, wm, monkeypatch, 0.1)
    assert s.best == menu[1][1] and s.incumbent_partial and len(s.best_eval.results) == 4
    assert max(n for _, n in seen) == 4 and sorted(i for i, n in seen if n == 4) == [1, 3]
    accepted = [r for r in s.records if r.accepted]  # one record of its own, after the rung's evaluations
    assert len(accepted) == 1 and accepted[0] is s.records[-1] and accepted[0].examples == 4
    assert accepted[0].accuracy == 1.0 and accepted[0].note.startswith("accepted early (sign test 4-0, p 0.0625")
    early = [v for v in verified if v.get("accepted_early")]
    assert len(early) == 1 and early[0]["sign_test"] == {"wins": 4, "losses": 0, "p": 0.0625}
    # at level 0.05 nothing is decisive below the top rung: the halving runs to the end, nothing accepted early
    s, menu, seen, verified = _race_setup(task, wm, monkeypatch, 0.05)
    assert max(n for _, n in seen) == 8 and not any(r.accepted for r in s.records)
    assert not any(v.get("accepted_early") for v in verified)


@pytest.mark.parametrize("ranker", ["prior", "random"])
def test_an_early_incumbent_is_completed_before_any_full_comparison_within_budget(task, wm, ranker):
    run = {"eval_examples": 16, "early_accept": 0.3, "enter": 4}  # a loose level, so the fake LLM's gains pass
    result = _search(task, wm, ranker, calls=400, seed=1, **run).run()
    records, full = result.records, 16
    assert any(r.accepted and r.examples < full for r in records)  # the race did accept early
    _incumbent_full_at_every_full_comparison(records, full)
    search = result.costs["search"]
    pairs = {(json.dumps(r.chain, sort_keys=True), i) for r in records for i in range(r.examples)}
    assert len(pairs) == search["example_evals"] <= 400  # each pair paid once, every payment recorded
    final = result.final_chain.to_dict()
    assert result.final_search["examples"] == max(r.examples for r in records if r.chain == final)
    early = [r.calls for r in records if r.accepted and r.examples < full]
    for c in sorted({60, 150, *early, *(c - 1 for c in early)}):  # budget C is the first C calls of the longer run,
        short = _search(task, wm, ranker, calls=c, seed=1, **run).run()  # also just before an early acceptance
        chain, edits, acc = result.best_at(calls=c)
        assert short.final_chain == chain and short.edits == edits and short.final_search["accuracy"] == acc
    assert _strip(result) == _strip(_search(task, wm, ranker, calls=400, seed=1, **run).run())
    result.check_replay()
    with pytest.raises(TapError, match="early_accept"):
        _search(task, wm, ranker, calls=10, early_accept=1.0)


def _incumbent_full_at_every_full_comparison(records, full: int) -> None:
    """Every full evaluation of another chain came after the incumbent had its own full evaluation."""
    held = None  # (chain, examples it was evaluated on) of the incumbent
    for r in records:
        chain = json.dumps(r.chain, sort_keys=True)
        if r.examples == full and held and chain != held[0]:
            assert held[1] == full, "a full evaluation was compared with a partially evaluated incumbent"
        if r.accepted:
            held = (chain, r.examples)
        elif held and chain == held[0]:
            held = (chain, max(held[1], r.examples))  # the incumbent's own later evaluations


@pytest.mark.parametrize("ranker", ["prior", "random"])
def test_a_lazy_start_pays_the_initial_chain_only_on_the_rungs_it_is_compared_on(task, wm, ranker):
    run = {"eval_examples": 16, "early_accept": 0.3, "enter": 4}
    eager = _search(task, wm, ranker, calls=300, seed=2, **run).run()
    lazy = _search(task, wm, ranker, calls=300, seed=2, lazy_initial=True, **run).run()
    first = lazy.records[0]
    assert first.examples == 4 and first.calls == 4 and first.accepted and not first.edits  # the first rung only
    assert eager.records[0].examples == 16 and eager.records[0].calls == 16
    # the same decisions on the same examples, taken with fewer calls: eager's acceptances are a prefix of lazy's
    held = [(json.dumps(r.chain, sort_keys=True), r.calls) for r in eager.records if r.accepted]
    held_lazy = [(json.dumps(r.chain, sort_keys=True), r.calls) for r in lazy.records if r.accepted]
    assert len(held) >= 2 and [c for c, _ in held_lazy[: len(held)]] == [c for c, _ in held]
    assert all(b <= a for (_, a), (_, b) in zip(held[1:], held_lazy[1:]))
    assert held_lazy[1][1] < held[1][1]  # the first acceptance (early, on 8 examples) came sooner
    _incumbent_full_at_every_full_comparison(lazy.records, 16)
    search = lazy.costs["search"]
    pairs = {(json.dumps(r.chain, sort_keys=True), i) for r in lazy.records for i in range(r.examples)}
    assert len(pairs) == search["example_evals"] <= 300  # each pair paid once, every payment recorded
    start = lazy.initial_chain.to_dict()  # reported on every example it was paid on
    assert lazy.initial_search["examples"] == max(r.examples for r in lazy.records if r.chain == start) > 4
    accepted = [r.calls for r in lazy.records if r.accepted]
    for c in sorted({5, 90, *accepted, *(c - 1 for c in accepted[1:])}):  # budget C: the first C calls (C >= 4)
        short = _search(task, wm, ranker, calls=c, seed=2, lazy_initial=True, **run).run()
        chain, edits, acc = lazy.best_at(calls=c)
        assert short.final_chain == chain and short.edits == edits and short.final_search["accuracy"] == acc
    assert _strip(lazy) == _strip(_search(task, wm, ranker, calls=300, seed=2, lazy_initial=True, **run).run())
    lazy.check_replay()
    with pytest.raises(BudgetExhausted, match="budget"):  # not even the first rung: named, as for an eager start
        _search(task, wm, ranker, calls=3, seed=2, lazy_initial=True, **run).run()
