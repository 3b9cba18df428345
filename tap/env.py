"""The environment: frozen LLM + task + reward. ``evaluate(chain, examples)`` and ``evaluate_at(chain, n)``
are the only ways a chain meets the real model, so this is where calls are counted, budgets enforced and
leakage refused.

Paired, multi-fidelity evaluation (``evaluate_at``): the search examples are one fixed order of the val
split (the split's own seeded order, or a reshuffle by ``order_seed``); an evaluation at fidelity ``n``
uses its first ``n`` examples, so two chains at the same fidelity are always compared on the same
examples, and raising a chain from fidelity ``n`` to ``m`` pays only the ``m - n`` new examples. Two
budgets, both enforced and never exceeded: *chain evaluations* (an evaluation on ``n`` new examples
costs ``n / eval_examples`` of one) and *LLM calls*, counted as example evaluations (one example run
through the model for one chain: a reply plus its gold-answer score in generate mode, or every
option's score in score mode). A (chain, example) pair is charged once per environment, whatever the
state of the on-disk cache, so budgets and results do not depend on what an earlier run paid.

Two ways to answer:
- ``generate``: the model writes a reply; the answer is extracted (``tap.tasks.answers``) and judged.
  The dense reward is the gold answer's per-token probability under the chain (one scoring call).
- ``score``: multiple-choice likelihood; each option is scored as the continuation of the prompt in
  the chain's answer format, and the best-scored option is the pick. The dense reward is the gold
  option's probability after label-bias correction (each option's mean score over the evaluated
  examples is subtracted first, when the options form a label set shared across examples), since small
  models mostly shift their preferred label.
"""

from __future__ import annotations

import math
import random
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

from tap.chains.chain import Chain
from tap.chains.render import answer_prefix, render_messages
from tap.errors import BudgetExhausted, ChainError, TapError
from tap.llm.base import LLM, GenerationSettings
from tap.tasks.answers import judge
from tap.tasks.schema import Example, Task

Mode = Literal["auto", "generate", "score"]


@dataclass(frozen=True)
class ExampleResult:
    """What the model did on one example."""

    uid: int
    response: str  # the generated reply, or the picked option in score mode
    extracted: str  # the answer read from the response
    correct: bool
    compliant: bool  # followed the answer format (generate mode; always True in score mode)
    gold_prob: float  # dense signal in [0, 1] (see module docstring)
    choice_logprobs: tuple[float, ...] = ()  # score mode: per option


@dataclass
class Evaluation:
    """A chain's evaluation on a list of examples."""

    results: list[ExampleResult]
    llm_calls: int  # real (uncached) calls this evaluation paid
    cache_hits: int
    split: str
    mode: str
    example_evals: int = 0  # example evaluations charged to the budget (pairs not paid before)

    @property
    def accuracy(self) -> float:
        return sum(r.correct for r in self.results) / len(self.results)

    @property
    def dense(self) -> float:
        return sum(r.gold_prob for r in self.results) / len(self.results)

    @property
    def compliance(self) -> float:
        return sum(r.compliant for r in self.results) / len(self.results)

    def answer_histogram(self) -> dict[str, int]:
        """How often each extracted answer was given (label bias shows here)."""
        return dict(Counter(r.extracted for r in self.results).most_common())

    def summary(self) -> dict:
        return {"accuracy": self.accuracy, "dense": self.dense, "compliance": self.compliance,
                "n": len(self.results), "llm_calls": self.llm_calls, "cache_hits": self.cache_hits,
                "split": self.split, "mode": self.mode}

    def to_dict(self) -> dict:
        return {**self.summary(), "results": [asdict(r) for r in self.results]}


@dataclass
class Spend:
    """What was spent, by split: chain evaluations and example evaluations charged (the two budget units),
    and the real (uncached) LLM requests and cache hits behind them.
    """

    chain_evals: Counter = field(default_factory=Counter)
    example_evals: Counter = field(default_factory=Counter)
    llm_calls: Counter = field(default_factory=Counter)
    cache_hits: Counter = field(default_factory=Counter)


_EPS = 1e-9


def check_budgets(budget: float | None, budget_calls: int | None) -> None:
    """Refuse budgets that cannot run a search (naming the fix)."""
    if budget is None and budget_calls is None:
        raise TapError("give a budget: chain evaluations (--budget) and/or LLM calls (--budget-calls).")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int | float) or budget < 1):
        raise TapError(f"budget must be a positive number of chain evaluations, got {budget!r}; the initial "
                       "chain's evaluation already takes one.")
    if budget_calls is not None and (isinstance(budget_calls, bool) or not isinstance(budget_calls, int)
                                     or budget_calls < 1):
        raise TapError(f"budget_calls must be a positive number of LLM calls (example evaluations), "
                       f"got {budget_calls!r}.")


class Environment:
    """Evaluate chains of one task on the frozen LLM.

    Args:
        llm: the frozen model, normally a ``CachedLLM`` (its ``calls``/``hits`` are read).
        task: the task; demonstrations in a chain must come from its train split.
        mode: ``auto`` (score for multiple-choice tasks, generate otherwise), ``generate`` or ``score``.
        generation: decoding settings for generate mode.
        dense_reward: in generate mode, also score the gold answer (one more call per example).
        budget: most chain evaluations on train/val examples (None: unlimited); test evaluations
            are never charged to it, since they never guide a search.
        budget_calls: most LLM calls, as example evaluations on train/val examples (None: unlimited).
        eval_examples: the fidelity of one full chain evaluation in ``evaluate_at`` (what a chain
            evaluation of the budget means there); None: 16, with no warning when the task has fewer.
        order_seed: reshuffle the search examples with this seed (None: the split's own order).
    """

    def __init__(self, llm: LLM, task: Task, mode: Mode = "auto", generation: GenerationSettings | None = None,
                 dense_reward: bool = True, budget: float | None = None, budget_calls: int | None = None,
                 eval_examples: int | None = None, order_seed: int | None = None) -> None:
        if mode not in ("auto", "generate", "score"):
            raise TapError(f"unknown mode {mode!r}; use auto, generate or score.")
        if mode == "score" and task.metric != "multiple_choice":
            raise TapError(f"score mode needs a multiple-choice task; {task.name} is {task.metric}. Use generate.")
        self.llm = llm
        self.task = task
        self.mode = ("score" if task.metric == "multiple_choice" else "generate") if mode == "auto" else mode
        self.generation = generation or GenerationSettings()
        self.dense_reward = dense_reward
        for what, value in (("budget", budget), ("budget_calls", budget_calls)):
            if value is not None and not value > 0:
                raise TapError(f"{what} must be positive (got {value!r}); the initial chain's evaluation already "
                               "takes some of it.")
        asked, eval_examples = eval_examples, 16 if eval_examples is None else eval_examples
        if eval_examples < 1:
            raise TapError(f"eval_examples must be >= 1, got {eval_examples}.")
        self.budget = budget
        self.budget_calls = budget_calls
        self.spend = Spend()
        self._train = {ex.uid: ex for ex in task.train}
        order = list(task.val or task.train)
        if order_seed is not None:
            random.Random(f"order:{task.name}:{order_seed}").shuffle(order)
        self.order: list[Example] = order  # the paired search examples: fidelity n uses order[:n]
        self.eval_examples = min(eval_examples, len(order)) if order else eval_examples
        if order and asked is not None and len(order) < asked:
            print(f"[tap] warning: {task.name} has only {len(order)} search examples (val split), fewer than the "
                  f"{eval_examples} asked for; each evaluation uses {len(order)}. With so few, accuracy moves in "
                  f"steps of {1 / len(order):.2f}: give the task more rows for decisions you can trust.",
                  file=sys.stderr)
        self._charged: set[tuple[str, int]] = set()  # (chain json, example uid) pairs paid by evaluate_at

    @property
    def chain_evals(self) -> float:
        """Chain evaluations charged to the budget (train and val)."""
        return self.spend.chain_evals["train"] + self.spend.chain_evals["val"]

    @property
    def example_evals(self) -> int:
        """LLM calls charged to the budget, as example evaluations (train and val)."""
        return self.spend.example_evals["train"] + self.spend.example_evals["val"]

    def costs(self) -> dict:
        """What the search has spent: both budget units, and the real requests and cache hits behind them."""
        s = self.spend
        return {"chain_evals": round(self.chain_evals, 6), "example_evals": self.example_evals,
                "llm_calls": s.llm_calls["train"] + s.llm_calls["val"],
                "cache_hits": s.cache_hits["train"] + s.cache_hits["val"],
                "budget": self.budget, "budget_calls": self.budget_calls, "eval_examples": self.eval_examples}

    def affordable(self, chain_evals: float, example_evals: int) -> bool:
        """Whether both budgets can still pay this much (and neither is already spent)."""
        if self.budget is not None and (self.chain_evals >= self.budget - _EPS
                                        or self.chain_evals + chain_evals > self.budget + _EPS):
            return False
        return self.budget_calls is None or (self.example_evals < self.budget_calls
                                             and self.example_evals + example_evals <= self.budget_calls)

    def exhausted(self) -> bool:
        """Whether either budget is spent (nothing more can be evaluated)."""
        return not self.affordable(0.0, 0)

    def cost_of(self, chain: Chain, n: int) -> tuple[float, int]:
        """What ``evaluate_at(chain, n)`` would charge: (chain evaluations, example evaluations)."""
        key = chain.to_json()
        new = sum((key, ex.uid) not in self._charged for ex in self.order[:n])
        return new / self.eval_examples, new

    def _refuse(self) -> BudgetExhausted:
        what = []
        if self.budget is not None:
            what.append(f"{self.chain_evals:g} of {self.budget:g} chain evaluations")
        if self.budget_calls is not None:
            what.append(f"{self.example_evals} of {self.budget_calls} LLM calls")
        return BudgetExhausted(f"the budget is spent ({' and '.join(what)} used); raise --budget/--budget-calls or "
                               "stop the search here (everything evaluated so far is cached and kept).")

    def _check(self, chain: Chain, examples: Sequence[Example]) -> str:
        chain.validate()
        if not examples:
            raise TapError("evaluate() got no examples; pass at least one example of the task.")
        for d in chain.demos:
            ex = self._train.get(d.uid)
            if ex is None or ex.input != d.input:
                raise ChainError(
                    f"demonstration uid {d.uid} is not an example of {self.task.name}'s train split; "
                    "demonstrations may only come from train (never val or test)."
                )
        splits = {self.task.split_of.get(ex.uid) for ex in examples}
        if None in splits or len(splits) != 1:
            raise TapError(f"evaluate() needs examples of one split of {self.task.name}; got splits {splits}.")
        split = splits.pop()
        if split == "train" and {d.uid for d in chain.demos} & {ex.uid for ex in examples}:
            raise ChainError("a demonstration is also an evaluated example; evaluate on val, or drop that demo.")
        return split

    def evaluate(self, chain: Chain, examples: Sequence[Example]) -> Evaluation:
        """Run ``chain`` on ``examples`` (one split) and judge every answer; charged as one chain evaluation
        and ``len(examples)`` example evaluations (test is never charged). ``evaluate_at`` is the paired form.
        """
        split = self._check(chain, examples)
        if split != "test" and not self.affordable(1.0, len(examples)):
            raise self._refuse()
        return self._run(chain, examples, split, 1.0, len(examples))

    def evaluate_at(self, chain: Chain, n: int | None = None) -> Evaluation:
        """Run ``chain`` on the first ``n`` search examples (default: ``eval_examples``), paying only the
        examples this chain was not evaluated on before in this environment (``BudgetExhausted`` if either
        budget cannot pay them).
        """
        n = self.eval_examples if n is None else n
        if not 1 <= n <= len(self.order):
            raise TapError(f"fidelity {n} is outside 1..{len(self.order)} (the search examples of {self.task.name}).")
        examples = self.order[:n]
        split = self._check(chain, examples)
        key = chain.to_json()
        new = [ex.uid for ex in examples if (key, ex.uid) not in self._charged]
        cost = len(new) / self.eval_examples
        if not self.affordable(cost, len(new)):
            raise self._refuse()
        ev = self._run(chain, examples, split, cost, len(new))
        self._charged.update((key, uid) for uid in new)
        return ev

    def paid_prefix(self, chain: Chain) -> int:
        """How many of the first search examples ``chain`` was paid on, without a gap (0: none)."""
        key = chain.to_json()
        return next((i for i, ex in enumerate(self.order) if (key, ex.uid) not in self._charged), len(self.order))

    def reread(self, chain: Chain, n: int) -> Evaluation:
        """``chain`` on the first ``n`` search examples, every one of them paid before: nothing is charged and no
        budget is read, so a search can still compare with what it paid for once its budget is spent (the
        incumbent's examples, for a decision about evaluations already paid).
        """
        if not 1 <= n <= len(self.order):
            raise TapError(f"fidelity {n} is outside 1..{len(self.order)} (the search examples of {self.task.name}).")
        examples = self.order[:n]
        key = chain.to_json()
        if any((key, ex.uid) not in self._charged for ex in examples):
            raise TapError(f"reread needs a chain already evaluated on its first {n} search examples; use evaluate_at.")
        return self._run(chain, examples, self._check(chain, examples), 0.0, 0)

    def _run(self, chain: Chain, examples: Sequence[Example], split: str, cost: float, charged: int) -> Evaluation:
        calls0, hits0 = getattr(self.llm, "calls", 0), getattr(self.llm, "hits", 0)
        results = self._score(chain, examples) if self.mode == "score" else self._generate(chain, examples)
        calls, hits = getattr(self.llm, "calls", 0) - calls0, getattr(self.llm, "hits", 0) - hits0
        self.spend.chain_evals[split] += cost
        self.spend.example_evals[split] += charged
        self.spend.llm_calls[split] += calls
        self.spend.cache_hits[split] += hits
        return Evaluation(results, calls, hits, split, self.mode, charged)

    def _prompt(self, chain: Chain, ex: Example) -> str:
        choices = ex.choices if self.task.metric == "multiple_choice" else ()
        return self.llm.format_chat(render_messages(chain, ex.input, choices))

    def _generate(self, chain: Chain, examples: Sequence[Example]) -> list[ExampleResult]:
        prompts = [self._prompt(chain, ex) for ex in examples]
        replies = self.llm.generate(prompts, self.generation)
        before, after = answer_prefix(chain)
        gold = [0.0] * len(examples)
        if self.dense_reward:
            scores = self.llm.score([p + before.rstrip(" ") for p in prompts],
                                    [(" " if before.endswith(" ") else "") + ex.answer + after for ex in examples])
            gold = [math.exp(s.mean_logprob) for s in scores]
        marker = chain.answer_format.marker
        out = []
        for ex, reply, g in zip(examples, replies, gold):
            mc = self.task.metric == "multiple_choice"
            j = judge(reply, list(ex.targets), list(ex.choices) if mc else [],
                      ex.correct_choices() if mc else set(), marker, self.task.match)
            out.append(ExampleResult(ex.uid, reply, j.extracted, j.correct, j.compliant, g))
        return out

    def _score(self, chain: Chain, examples: Sequence[Example]) -> list[ExampleResult]:
        before, after = answer_prefix(chain)
        lead = " " if before.endswith(" ") else ""
        prompts, conts, owner = [], [], []
        for i, ex in enumerate(examples):
            p = self._prompt(chain, ex) + before.rstrip(" ")
            for c in ex.choices:
                prompts.append(p)
                conts.append(lead + c + after)
                owner.append(i)
        scores = self.llm.score(prompts, conts)
        per_ex: list[list[float]] = [[] for _ in examples]
        for i, s in zip(owner, scores):
            per_ex[i].append(s.logprob)
        # label-bias correction: subtract each option's mean log-prob over these examples
        by_choice: dict[str, list[float]] = {}
        for ex, lps in zip(examples, per_ex):
            for c, lp in zip(ex.choices, lps):
                by_choice.setdefault(c, []).append(lp)
        mean = {c: sum(v) / len(v) for c, v in by_choice.items()}
        out = []
        for ex, lps in zip(examples, per_ex):
            pick = max(range(len(lps)), key=lambda k: (lps[k], -k))
            # correct only over a shared label set: an option seen once would cancel its own evidence
            shared = all(len(by_choice[c]) >= 2 for c in ex.choices)
            corrected = [lp - mean[c] for c, lp in zip(ex.choices, lps)] if shared else list(lps)
            top = max(corrected)
            z = sum(math.exp(v - top) for v in corrected)
            gold_idx = ex.choices.index(ex.answer)
            gold = math.exp(corrected[gold_idx] - top) / z
            out.append(ExampleResult(ex.uid, ex.choices[pick], ex.choices[pick], pick in ex.correct_choices(),
                                     True, gold, tuple(lps)))
        return out
