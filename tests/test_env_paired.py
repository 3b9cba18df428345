"""Paired, multi-fidelity evaluation (``Environment.evaluate_at``) and the two budgets."""

import random

import pytest

from tap.chains.chain import AnswerFormat, Chain
from tap.env import Environment
from tap.errors import BudgetExhausted, TapError
from tap.llm.cache import CallCache
from tap.llm.cached import CachedLLM
from tests.helpers import FakeLLM, arithmetic_task, true_false_task


def _env(task=None, llm=None, **kw):
    task = task or arithmetic_task(80)
    return Environment(CachedLLM(llm or FakeLLM(), CallCache(None)), task, **kw)


def _chains(k):
    return [Chain(f"Add the numbers, variant {i}.", AnswerFormat("", "Answer: {answer}")) for i in range(k)]


def test_chains_at_one_fidelity_are_compared_on_the_same_examples():
    env = _env(eval_examples=8)
    a, b = _chains(2)
    ea, eb = env.evaluate_at(a, 6), env.evaluate_at(b, 6)
    assert [r.uid for r in ea.results] == [r.uid for r in eb.results] == [ex.uid for ex in env.order[:6]]
    assert all(env.task.split_of[r.uid] == "val" for r in ea.results)


def test_order_is_the_val_split_or_a_seeded_reshuffle():
    task = arithmetic_task(80)
    assert [e.uid for e in _env(task).order] == [e.uid for e in task.val]
    one, again, other = (_env(task, order_seed=s).order for s in (1, 1, 2))
    assert one == again != other
    assert sorted(e.uid for e in one) == sorted(e.uid for e in task.val)  # never a test example


def test_raising_fidelity_pays_exactly_the_new_examples_from_the_cache():
    fake = FakeLLM()
    env = _env(llm=fake, eval_examples=8)
    (chain,) = _chains(1)
    first = env.evaluate_at(chain, 4)
    assert first.example_evals == 4 and env.example_evals == 4 and env.chain_evals == pytest.approx(0.5)
    generated, scored = fake.generated, fake.scored
    second = env.evaluate_at(chain, 8)
    assert second.example_evals == 4 and env.example_evals == 8 and env.chain_evals == pytest.approx(1.0)
    assert fake.generated - generated == 4 and fake.scored - scored == 4  # only the new examples met the model
    assert [r.uid for r in second.results[:4]] == [r.uid for r in first.results]
    assert second.results[:4] == first.results  # the shared examples are the cached results
    again = env.evaluate_at(chain, 8)  # nothing new: free
    assert again.example_evals == 0 and env.example_evals == 8
    assert (again.accuracy, again.dense) == (second.accuracy, second.dense)


def test_score_mode_fidelity_pays_the_new_examples():
    env = _env(true_false_task(80), eval_examples=10)
    (chain,) = _chains(1)
    env.evaluate_at(chain, 5)
    ev = env.evaluate_at(chain, 10)
    assert ev.example_evals == 5 and env.example_evals == 10 and env.chain_evals == pytest.approx(1.0)


def test_call_budget_is_enforced_before_any_model_call():
    fake = FakeLLM()
    env = _env(llm=fake, eval_examples=8, budget_calls=10)
    a, b = _chains(2)
    first = env.evaluate_at(a, 8)
    with pytest.raises(BudgetExhausted, match="8 of 10 LLM calls"):
        env.evaluate_at(b, 4)  # would need 4 > 2 left
    calls = fake.generated
    env.evaluate_at(b, 2)
    assert env.example_evals == 10 and fake.generated == calls + 2
    with pytest.raises(BudgetExhausted):
        env.evaluate_at(a, 1)  # spent: even a free read is refused, the search must stop
    assert env.exhausted()
    again = env.reread(a, 8)  # ... unless asked for by name: what was paid can be compared with, for free
    assert [(r.uid, r.correct) for r in again.results] == [(r.uid, r.correct) for r in first.results]
    assert env.example_evals == 10 and again.example_evals == 0 and fake.generated == calls + 2
    with pytest.raises(TapError, match="already evaluated on its first 4"):
        env.reread(b, 4)  # b was paid on 2 examples only


@pytest.mark.parametrize("seed", range(6))
def test_no_fidelity_schedule_exceeds_either_budget(seed):
    rng = random.Random(seed)
    budget, budget_calls = rng.choice([None, 3, 5.5]), rng.choice([None, 17, 40])
    if budget is None and budget_calls is None:
        budget_calls = 23
    env = _env(eval_examples=8, budget=budget, budget_calls=budget_calls)
    chains = _chains(6)
    refused = 0
    for _ in range(60):
        try:
            env.evaluate_at(rng.choice(chains), rng.choice([1, 2, 4, 8, 16]))
        except BudgetExhausted:
            refused += 1
        assert budget is None or env.chain_evals <= budget + 1e-9
        assert budget_calls is None or env.example_evals <= budget_calls
        assert env.spend.example_evals["test"] == 0
    assert refused > 0


def test_chain_evaluation_budget_counts_fractions():
    env = _env(eval_examples=8, budget=1.5)
    a, b = _chains(2)
    env.evaluate_at(a)  # 1.0
    env.evaluate_at(b, 4)  # 0.5
    assert env.chain_evals == pytest.approx(1.5) and env.exhausted()
    with pytest.raises(BudgetExhausted, match="1.5 of 1.5 chain evaluations"):
        env.evaluate_at(b, 8)


def test_fidelity_and_budget_errors():
    env = _env(eval_examples=8)
    with pytest.raises(TapError, match="fidelity 0 is outside"):
        env.evaluate_at(_chains(1)[0], 0)
    with pytest.raises(TapError, match="fidelity 999 is outside"):
        env.evaluate_at(_chains(1)[0], 999)
    with pytest.raises(TapError, match="budget_calls must be positive"):
        _env(budget_calls=0)
    with pytest.raises(TapError, match="eval_examples must be >= 1"):
        _env(eval_examples=0)


def test_cost_of_matches_what_evaluate_at_charges():
    env = _env(eval_examples=8)
    (chain,) = _chains(1)
    assert env.cost_of(chain, 4) == (0.5, 4)
    env.evaluate_at(chain, 4)
    assert env.cost_of(chain, 8) == (0.5, 4)
    assert env.cost_of(chain, 4) == (0.0, 0)


def test_test_split_is_never_charged_or_searched():
    env = _env(eval_examples=8, budget_calls=8)
    (chain,) = _chains(1)
    env.evaluate(chain, env.task.test[:5])
    assert env.example_evals == 0 and env.spend.example_evals["test"] == 5
    assert not {ex.uid for ex in env.order} & {ex.uid for ex in env.task.test}


def test_a_task_smaller_than_the_fidelity_warns_and_says_what_was_used(capsys):
    task = arithmetic_task(12)  # 4 val examples
    env = _env(task, eval_examples=16)
    assert env.eval_examples == len(task.val) == 4
    err = capsys.readouterr().err
    assert "has only 4 search examples" in err and "each evaluation uses 4" in err
    _env(task)  # no fidelity asked for: no warning
    assert capsys.readouterr().err == ""
