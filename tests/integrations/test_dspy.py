import copy
import re
from collections.abc import Sequence

import pytest

dspy = pytest.importorskip("dspy")

from tap.chains.render import render_messages  # noqa: E402
from tap.env import Environment  # noqa: E402
from tap.errors import BudgetExhausted, TapError  # noqa: E402
from tap.integrations.dspy import (  # noqa: E402
    CallBudget,
    CallBudgetExceeded,
    TapAdapter,
    TapLM,
    TapMetric,
    TaPOptimizer,
    chain_of,
    to_program,
)
from tap.llm.base import GenerationSettings  # noqa: E402
from tests.helpers import FakeLLM, RuleLLM, arithmetic_task  # noqa: E402


class ChatFake(FakeLLM):
    """Answers the last "What is a + b?" of a prompt right, in DSPy's chat format when the prompt uses it."""

    name = "chat-fake"

    def generate(self, prompts: Sequence[str], settings: GenerationSettings) -> list[str]:
        super().generate(prompts, settings)  # records the batch (and sleeps ``delay``)
        out = []
        for p in prompts:
            a, b = re.findall(r"What is (\d+) \+ (\d+)\?", p)[-1]
            out.append(f"[[ ## answer ## ]]\n{int(a) + int(b)}" if "[[ ##" in p else str(int(a) + int(b)))
        return out


def examples(n: int, start: int = 0) -> list:
    task = arithmetic_task(80)
    return [dspy.Example(question=ex.input, answer=ex.answer).with_inputs("question") for ex in task.examples[start:n]]


@pytest.fixture
def lm_factory(tmp_path):
    made = []

    def make(llm=None, budget=None, name="calls.sqlite", **kwargs):
        lm = TapLM(llm if llm is not None else ChatFake(), cache=tmp_path / name, budget=budget, **kwargs)
        made.append(lm)
        return lm

    yield make
    dspy.configure(lm=None, adapter=None)


def test_calls_counted_and_cached_once(lm_factory):
    fake = ChatFake()
    lm = lm_factory(fake)
    assert isinstance(lm, dspy.BaseLM)
    predict = dspy.Predict("question -> answer")
    with dspy.context(lm=lm):
        first = predict(question="What is 2 + 3?")
        again = predict(question="What is 2 + 3?")
    assert first.answer == again.answer == "5"
    assert (lm.calls, lm.paid, lm.budget.repeats, fake.generated) == (1, 1, 1, 1)
    # a new run over the same cache file: charged once to its own budget, paid nothing
    fake2 = ChatFake()
    lm2 = lm_factory(fake2)
    with dspy.context(lm=lm2):
        assert predict(question="What is 2 + 3?").answer == "5"
    assert (lm2.calls, lm2.paid, fake2.generated) == (1, 0, 0)
    # copies (DSPy deep-copies programs and copies LMs per rollout) share the model, worker and budget
    clone = copy.deepcopy(lm2)
    with dspy.context(lm=clone):
        predict(question="What is 4 + 4?")
    assert lm2.calls == 2 and clone.history and not lm2.history[-1:] == clone.history[-1:]
    assert lm2.run(lambda llm: lm2.run(lambda inner: inner is llm))  # a nested run does not deadlock


def test_generation_is_greedy_and_deterministic(lm_factory, tiny_llm):
    replies = []
    for name in ("a.sqlite", "b.sqlite"):  # two fresh caches: the model computes both replies
        lm = lm_factory(tiny_llm, name=name, max_tokens=6)
        replies.append(lm("What is 1 + 2?", temperature=1.0)[0])
        assert lm.paid == 1
    assert replies[0] == replies[1] and replies[0]


def test_evaluate_through_taplm_counts_exactly_under_threads(lm_factory):
    devset = examples(24)
    results = []
    for threads in (1, 6):
        fake = ChatFake(delay=0.01)
        lm = lm_factory(fake, name=f"t{threads}.sqlite")
        with dspy.context(lm=lm):
            ev = dspy.Evaluate(devset=devset, metric=TapMetric("lenient"), num_threads=threads,
                               display_progress=False)
            results.append(ev(dspy.Predict("question -> answer")).score)
        assert (lm.calls, lm.paid, fake.generated) == (24, 24, 24)
    assert results == [100.0, 100.0]


def test_budget_refuses_new_calls_and_serves_repeats(lm_factory):
    budget = CallBudget(3)
    lm, proposer = lm_factory(budget=budget), lm_factory(budget=budget, name="p.sqlite")
    predict = dspy.Predict("question -> answer")
    with dspy.context(lm=lm):
        for q in examples(2):
            predict(**q.inputs())
    with dspy.context(lm=proposer):  # a second LM of the run draws on the same budget
        predict(question="What is 9 + 9?")
        with pytest.raises(CallBudgetExceeded) as info:
            predict(question="What is 9 + 8?")
        assert predict(question="What is 9 + 9?").answer == "18"  # asked before: free
    assert isinstance(info.value, BudgetExhausted) and "budget of 3 LLM calls" in str(info.value)
    assert budget.calls == 3 and budget.left == 0
    # DSPy's Evaluate catches the refusal per example: refused examples score 0, the run finishes
    with dspy.context(lm=lm):
        ev = dspy.Evaluate(devset=examples(4), metric=TapMetric("lenient"), num_threads=2, display_progress=False,
                           max_errors=10)
        assert ev(predict).score == 50.0
    assert budget.calls == 3


def test_zero_call_programs_pay_nothing(lm_factory):
    lm = lm_factory()
    train = examples(20)
    with dspy.context(lm=lm):
        few = dspy.LabeledFewShot(k=4).compile(dspy.Predict("question -> answer"), trainset=train)
    assert len(few.predictors()[0].demos) == 4 and lm.calls == 0 and lm.paid == 0


def _search_setup(lm_factory, budget_calls=160, seed=0):
    rule = RuleLLM()
    lm = lm_factory(rule)
    train, val = examples(20), examples(50, start=20)
    program = dspy.Predict("question -> answer")
    opt = TaPOptimizer(metric="lenient", budget_calls=budget_calls, seed=seed, lm=lm)
    return rule, lm, opt, program, train, val


def test_optimizer_replays_the_chain_tap_found(lm_factory):
    rule, lm, opt, program, train, val = _search_setup(lm_factory)
    assert opt.resolved_preset() == "random"  # no world model ships for the rule LLM
    compiled = opt.compile(program, trainset=train, valset=val)
    result = compiled.tap_result
    # the search spent its own budget (example evaluations), not the LM's
    assert result.costs["search"]["example_evals"] <= 160 and lm.calls == 0
    final = result.final_chain
    assert final != result.initial_chain and final.demos  # the search moved (RuleLLM rewards demonstrations)
    assert program.predictors()[0].demos == []  # the student is untouched
    # the compiled program, run with TapAdapter, sends exactly the prompts TaP measured
    replay = chain_of(compiled)
    assert [m["content"] for m in render_messages(replay, "x")] == [m["content"] for m in render_messages(final, "x")]
    with dspy.context(lm=lm, adapter=TapAdapter()):
        ev = dspy.Evaluate(devset=val, metric=TapMetric("lenient"), num_threads=2, display_progress=False)
        score = ev(compiled).score
    sent = {lm.llm.format_chat(m["messages"]) for m in lm.history}
    expected = {lm.llm.format_chat(render_messages(final, ex.question)) for ex in val}
    assert sent == expected
    # and gets TaP's own accuracy for that chain on those examples
    task_env = Environment(lm.llm, _task_of(val, train), mode="generate", dense_reward=False,
                           generation=GenerationSettings(max_new_tokens=24))
    tap_acc = lm.run(lambda llm: task_env.evaluate(final, task_env.task.val).accuracy)
    assert score == pytest.approx(100 * tap_acc)


def _task_of(val, train):
    from tap.tasks.schema import Example, Task

    rows = [*train, *val]
    task = Task("check", [Example(i, r.question, (r.answer,)) for i, r in enumerate(rows)], "exact_match")
    task.splits = {"train": task.examples[: len(train)], "val": task.examples[len(train):], "test": []}
    task.split_of = {ex.uid: s for s, exs in task.splits.items() for ex in exs}
    return task


def test_optimizer_is_deterministic_and_keeps_its_best_at_the_budget(lm_factory):
    _, _, opt, program, train, val = _search_setup(lm_factory, budget_calls=24)
    a = opt.compile(program, trainset=train, valset=val)
    b = opt.compile(program, trainset=train, valset=val)
    assert a.tap_result.final_chain == b.tap_result.final_chain
    assert a.tap_result.costs["search"]["example_evals"] <= 24
    # the best program stays usable after the run's LM budget is spent
    spent = lm_factory(RuleLLM(), budget=0, name="spent.sqlite")
    with dspy.context(lm=spent, adapter=TapAdapter()), pytest.raises(CallBudgetExceeded):
        a(question="What is 1 + 1?")
    fresh = lm_factory(RuleLLM(), name="fresh.sqlite")
    with dspy.context(lm=fresh, adapter=TapAdapter()):
        assert a(question="What is 1 + 1?").answer.strip().isdigit()


def test_to_program_sets_instruction_demos_and_format(tmp_path):
    from tap.chains.chain import AnswerFormat, Chain, Demo

    train = examples(6)
    chain = Chain("Add them.", AnswerFormat("End with 'Answer: <answer>'.", "Answer: {answer}"), ("Add.",),
                  (Demo(2, train[2].question, train[2].answer),))
    program = to_program(dspy.Predict("question -> answer"), chain, train)
    predictor = program.predictors()[0]
    assert predictor.demos == [train[2]]
    assert predictor.signature.instructions.startswith("Add them.")
    messages = TapAdapter().format(predictor.signature, predictor.demos, {"question": "What is 1 + 1?"})
    assert messages == render_messages(chain, "What is 1 + 1?")
    assert TapAdapter().parse(predictor.signature, "so\nAnswer: 2") == {"answer": "2"}
    # a saved program keeps the chain (instructions, demos, answer template)
    program.save(str(tmp_path / "program.json"))
    loaded = dspy.Predict("question -> answer")
    loaded.load(str(tmp_path / "program.json"))
    assert TapAdapter().format(loaded.signature, loaded.demos, {"question": "What is 1 + 1?"}) == messages


def test_errors_name_the_problem_before_any_call(lm_factory):
    lm = lm_factory()
    opt = TaPOptimizer(budget_calls=8, lm=lm)

    class Two(dspy.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = dspy.Predict("question -> answer"), dspy.Predict("answer -> question")

    with pytest.raises(TapError, match="one predictor"):
        opt.compile(Two(), trainset=examples(6))
    with pytest.raises(TapError, match="empty trainset"):
        opt.compile(dspy.Predict("question -> answer"), trainset=[])
    with pytest.raises(TapError, match="one-output"):
        opt.compile(dspy.Predict("question -> reasoning, answer"), trainset=examples(6))
    with pytest.raises(TapError, match="TapMetric"):
        TaPOptimizer(metric=lambda *a: 1.0)
    with pytest.raises(TapError, match="does not exist.*preset='random'"):
        TaPOptimizer(preset="default", checkpoint="no/such/checkpoint")
    with pytest.raises(TapError, match="ranks edits with a world model, and none ships for"):
        TaPOptimizer(preset="default", lm=lm).resolved_preset()
    with pytest.raises(TapError, match="unknown preset 'prior-sh'"):
        TaPOptimizer(preset="prior-sh")
    with pytest.raises(TapError, match="TapLM"), dspy.context(lm=dspy.utils.DummyLM([{"answer": "1"}])):
        TaPOptimizer(budget_calls=8, checkpoint=None).compile(dspy.Predict("question -> answer"),
                                                              trainset=examples(6))
    assert lm.calls == 0 and lm.paid == 0
