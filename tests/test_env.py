import math

import pytest

from tap.chains.chain import AnswerFormat, Chain, Demo
from tap.chains.render import render_messages
from tap.env import Environment, Evaluation, ExampleResult
from tap.errors import BudgetExhausted, ChainError, TapError
from tap.llm.base import GenerationSettings
from tap.llm.cache import CallCache
from tap.llm.cached import CachedLLM
from tap.tasks.answers import judge
from tap.tasks.schema import Example
from tests.helpers import FakeLLM, arithmetic_task

GEN = GenerationSettings(max_new_tokens=8, stop=("\n\n",))


def _cached(llm):
    return CachedLLM(llm, CallCache(None))


def _demo(ex: Example) -> Demo:
    return Demo(ex.uid, ex.input, ex.answer)


def _chain(task, template="Answer: {answer}", n_demos=1):
    return Chain("Answer the question.", AnswerFormat("End with 'Answer: <answer>'.", template), (),
                 tuple(_demo(ex) for ex in task.train[:n_demos]))


# --- generate mode -----------------------------------------------------------------------------


def test_generate_mode_results_calls_and_cache(tiny_llm, tiny_task):
    llm = _cached(tiny_llm)
    env = Environment(llm, tiny_task, generation=GEN)
    chain = _chain(tiny_task)
    examples = tiny_task.val[:5]
    ev = env.evaluate(chain, examples)
    assert (ev.split, ev.mode) == ("val", "generate")
    assert [r.uid for r in ev.results] == [ex.uid for ex in examples]
    assert (ev.llm_calls, ev.cache_hits) == (10, 0)  # one generation and one gold scoring per example

    prompts = [tiny_llm.format_chat(render_messages(chain, ex.input)) for ex in examples]
    replies = tiny_llm.generate(prompts, GEN)
    gold = tiny_llm.score([p + "Answer:" for p in prompts], [" " + ex.answer for ex in examples])
    for r, ex, reply, g in zip(ev.results, examples, replies, gold):
        j = judge(reply, list(ex.targets), [], set(), "Answer:")
        assert (r.response, r.extracted, r.correct, r.compliant) == (reply, j.extracted, j.correct, j.compliant)
        assert r.gold_prob == pytest.approx(math.exp(g.mean_logprob), rel=1e-5)
        assert 0 < r.gold_prob <= 1
        assert r.choice_logprobs == ()

    again = env.evaluate(chain, examples)
    assert (again.llm_calls, again.cache_hits) == (0, 10)  # the same chain again costs no calls
    assert again.results == ev.results
    assert env.spend.chain_evals["val"] == 2
    assert (env.spend.llm_calls["val"], env.spend.cache_hits["val"]) == (10, 10)
    assert (llm.calls, llm.hits) == (10, 10)


def test_generate_mode_without_dense_reward(tiny_llm, tiny_task):
    env = Environment(_cached(tiny_llm), tiny_task, generation=GEN, dense_reward=False)
    ev = env.evaluate(_chain(tiny_task), tiny_task.val[:3])
    assert ev.llm_calls == 3
    assert [r.gold_prob for r in ev.results] == [0.0, 0.0, 0.0]


def test_results_follow_the_order_of_the_examples(tiny_llm, tiny_task):
    env = Environment(_cached(tiny_llm), tiny_task, generation=GEN)
    chain = _chain(tiny_task)
    forward = env.evaluate(chain, tiny_task.val[:4])
    backward = env.evaluate(chain, tiny_task.val[:4][::-1])
    assert backward.results == forward.results[::-1]
    assert backward.llm_calls == 0


def test_without_cache_wrapper_calls_are_not_counted(tiny_llm, tiny_task):
    ev = Environment(tiny_llm, tiny_task, generation=GEN).evaluate(_chain(tiny_task), tiny_task.val[:2])
    assert (ev.llm_calls, ev.cache_hits, len(ev.results)) == (0, 0, 2)


# --- score mode --------------------------------------------------------------------------------


def test_score_mode_results_and_label_bias_corrected_dense_reward(tiny_llm, tiny_mc_task):
    llm = _cached(tiny_llm)
    env = Environment(llm, tiny_mc_task)
    assert env.mode == "score"
    chain = _chain(tiny_mc_task, n_demos=2)
    examples = tiny_mc_task.val[:6]
    ev = env.evaluate(chain, examples)
    assert (ev.split, ev.mode, ev.llm_calls, ev.cache_hits) == ("val", "score", 12, 0)  # 2 options each

    lps = []
    for r, ex in zip(ev.results, examples):
        prompt = tiny_llm.format_chat(render_messages(chain, ex.input, ex.choices)) + "Answer:"
        raw = tiny_llm.score([prompt, prompt], [" True", " False"])
        assert r.choice_logprobs == pytest.approx([s.logprob for s in raw], abs=1e-4)
        pick = 0 if raw[0].logprob >= raw[1].logprob else 1
        assert (r.response, r.extracted) == (ex.choices[pick], ex.choices[pick])
        assert r.correct == (pick in ex.correct_choices())
        assert r.compliant
        lps.append(r.choice_logprobs)
    mean = [sum(lp[k] for lp in lps) / len(lps) for k in range(2)]
    for r, ex, lp in zip(ev.results, examples, lps):
        corrected = [lp[k] - mean[k] for k in range(2)]
        g = ex.choices.index(ex.answer)
        expected = math.exp(corrected[g]) / sum(math.exp(c) for c in corrected)
        assert r.gold_prob == pytest.approx(expected, rel=1e-6)
        assert 0.0 <= r.gold_prob <= 1.0
    assert 0.0 <= ev.dense <= 1.0

    again = env.evaluate(chain, examples)
    assert (again.llm_calls, again.cache_hits) == (0, 12)


def test_label_bias_correction_removes_a_constant_preference(tiny_mc_task):
    # the fake model prefers the shorter option ("True") by the same margin on every example:
    # raw picks are always "True", the corrected dense reward carries no preference (0.5)
    env = Environment(_cached(FakeLLM()), tiny_mc_task, mode="score")
    examples = tiny_mc_task.val
    ev = env.evaluate(Chain("Decide."), examples)
    assert {r.response for r in ev.results} == {"True"}
    assert [r.correct for r in ev.results] == [ex.answer == "True" for ex in examples]
    assert [r.gold_prob for r in ev.results] == pytest.approx([0.5] * len(examples))
    assert ev.answer_histogram() == {"True": len(examples)}


def test_score_mode_continuation_follows_the_answer_template(tiny_mc_task):
    fake = FakeLLM()
    env = Environment(_cached(fake), tiny_mc_task)
    ex = tiny_mc_task.val[0]
    env.evaluate(Chain("Decide.", AnswerFormat("", "The answer is {answer}.")), [ex])
    (batch,) = fake.score_batches
    prompt = fake.format_chat(render_messages(Chain("Decide."), ex.input, ex.choices)) + "The answer is"
    assert batch == [(prompt, " True."), (prompt, " False.")]


# --- mode selection ----------------------------------------------------------------------------


def test_mode_selection(tiny_llm, tiny_task, tiny_mc_task):
    assert Environment(tiny_llm, tiny_task).mode == "generate"
    assert Environment(tiny_llm, tiny_mc_task).mode == "score"
    assert Environment(tiny_llm, tiny_mc_task, mode="generate").mode == "generate"
    assert Environment(tiny_llm, tiny_mc_task, mode="score").mode == "score"
    with pytest.raises(TapError, match="score mode needs a multiple-choice task; tiny-arith is exact_match"):
        Environment(tiny_llm, tiny_task, mode="score")
    with pytest.raises(TapError, match="unknown mode 'sample'"):
        Environment(tiny_llm, tiny_task, mode="sample")


def test_generate_mode_on_a_multiple_choice_task(tiny_mc_task):
    fake = FakeLLM()
    env = Environment(_cached(fake), tiny_mc_task, mode="generate", generation=GenerationSettings(200, ()))
    examples = tiny_mc_task.val[:4]
    ev = env.evaluate(Chain("Decide."), examples)
    assert ev.mode == "generate" and ev.llm_calls == 8
    prompts = [fake.format_chat(render_messages(Chain("Decide."), ex.input, ex.choices)) for ex in examples]
    assert fake.generate_batches == [prompts]  # options are shown when generating, too
    for r, ex in zip(ev.results, examples):
        # the fake reply is the reversed prompt: it names neither option forwards
        j = judge(r.response, list(ex.targets), list(ex.choices), ex.correct_choices(), "")
        assert (r.extracted, r.correct, r.compliant) == (j.extracted, j.correct, j.compliant)
        assert r.choice_logprobs == ()


# --- budget and leakage ------------------------------------------------------------------------


def test_budget_counts_chain_evaluations_but_not_test(tiny_llm, tiny_task):
    llm = _cached(tiny_llm)
    env = Environment(llm, tiny_task, generation=GenerationSettings(4, ()), budget=2)
    chain = _chain(tiny_task)
    env.evaluate(chain, tiny_task.test[:2])
    env.evaluate(chain, tiny_task.val[:2])
    env.evaluate(chain, tiny_task.val[:2])  # cached, but still a chain evaluation
    assert env.chain_evals == 2
    calls = llm.calls
    with pytest.raises(BudgetExhausted, match="2 of 2 chain evaluations used"):
        env.evaluate(chain, tiny_task.val[:2])
    with pytest.raises(BudgetExhausted):
        env.evaluate(chain, tiny_task.train[1:3])
    assert llm.calls == calls  # refused before any call
    for _ in range(3):
        env.evaluate(chain, tiny_task.test[:2])  # final test evaluations are never charged
    assert env.chain_evals == 2
    assert env.spend.chain_evals == {"test": 4, "val": 2}


def test_budget_includes_train_evaluations(tiny_task):
    env = Environment(_cached(FakeLLM()), tiny_task, budget=1)
    env.evaluate(Chain("Go."), tiny_task.train[:2])
    with pytest.raises(BudgetExhausted):
        env.evaluate(Chain("Go."), tiny_task.val[:2])


def test_unlimited_budget(tiny_task):
    env = Environment(_cached(FakeLLM()), tiny_task)
    for _ in range(5):
        env.evaluate(Chain("Go."), tiny_task.val[:1])
    assert env.chain_evals == 5


@pytest.mark.parametrize("split", ["val", "test"])
def test_demo_not_from_train_is_refused(tiny_task, split):
    env = Environment(_cached(FakeLLM()), tiny_task)
    leaked = getattr(tiny_task, split)[0]
    chain = Chain("Go.", demos=(_demo(leaked),))
    with pytest.raises(ChainError, match=f"demonstration uid {leaked.uid} is not an example of tiny-arith's train"):
        env.evaluate(chain, tiny_task.val[1:3])


def test_demo_with_a_train_uid_but_other_input_is_refused(tiny_task):
    env = Environment(_cached(FakeLLM()), tiny_task)
    ex = tiny_task.train[0]
    with pytest.raises(ChainError, match="is not an example of"):
        env.evaluate(Chain("Go.", demos=(Demo(ex.uid, "What is 100 + 1?", "101"),)), tiny_task.val[:1])


def test_demo_evaluated_on_itself_is_refused(tiny_task):
    env = Environment(_cached(FakeLLM()), tiny_task)
    chain = Chain("Go.", demos=(_demo(tiny_task.train[0]),))
    with pytest.raises(ChainError, match="a demonstration is also an evaluated example"):
        env.evaluate(chain, tiny_task.train[:2])
    assert len(env.evaluate(chain, tiny_task.train[1:3]).results) == 2


def test_mixed_splits_are_refused(tiny_task):
    env = Environment(_cached(FakeLLM()), tiny_task)
    with pytest.raises(TapError, match="needs examples of one split of tiny-arith"):
        env.evaluate(Chain("Go."), [tiny_task.val[0], tiny_task.test[0]])


def test_examples_of_another_task_are_refused(tiny_task):
    env = Environment(_cached(FakeLLM()), tiny_task)
    with pytest.raises(TapError, match="needs examples of one split"):
        env.evaluate(Chain("Go."), [Example(999, "q", ("1",))])
    other = arithmetic_task(80, name="other")
    stranger = next(ex for ex in other.examples if ex.uid >= 40)
    with pytest.raises(TapError, match="needs examples of one split"):
        env.evaluate(Chain("Go."), [stranger])


def test_no_examples_is_refused(tiny_task):
    env = Environment(_cached(FakeLLM()), tiny_task)
    with pytest.raises(TapError, match="evaluate\\(\\) got no examples"):
        env.evaluate(Chain("Go."), [])
    assert env.chain_evals == 0


def test_empty_chain_is_refused(tiny_task):
    with pytest.raises(ChainError, match="the chain is empty"):
        Environment(_cached(FakeLLM()), tiny_task).evaluate(Chain(), tiny_task.val[:1])


# --- Evaluation ------------------------------------------------------------------------------


def test_evaluation_summary():
    results = [
        ExampleResult(0, "Answer: 3", "3", True, True, 0.5),
        ExampleResult(1, "4", "4", False, False, 0.25),
        ExampleResult(2, "Answer: 3", "3", False, True, 0.0),
        ExampleResult(3, "Answer: 5", "5", True, True, 0.25),
    ]
    ev = Evaluation(results, llm_calls=7, cache_hits=1, split="val", mode="generate")
    assert ev.summary() == {"accuracy": 0.5, "dense": 0.25, "compliance": 0.75, "n": 4, "llm_calls": 7,
                            "cache_hits": 1, "split": "val", "mode": "generate"}
    assert ev.answer_histogram() == {"3": 2, "4": 1, "5": 1}
    d = ev.to_dict()
    assert d["results"][1] == {"uid": 1, "response": "4", "extracted": "4", "correct": False, "compliant": False,
                               "gold_prob": 0.25, "choice_logprobs": ()}
    assert d["accuracy"] == 0.5


def test_label_bias_correction_skips_options_not_shared_across_examples():
    # options unique to each example form no label set: their raw scores are kept, not cancelled
    from tap.tasks.schema import Task

    examples = [Example(i, f"q{i}", (f"right{i}",), (f"right{i}", f"wrong{i}x"), (1.0, 0.0)) for i in range(6)]
    task = Task("unique-options", examples, "multiple_choice")
    env = Environment(_cached(FakeLLM()), task, mode="score")
    ev = env.evaluate(Chain("Decide."), task.val)
    for r in ev.results:
        lp = r.choice_logprobs
        assert r.gold_prob == pytest.approx(math.exp(lp[0]) / (math.exp(lp[0]) + math.exp(lp[1])))
