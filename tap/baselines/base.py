"""What every baseline search shares: the budgeted real evaluation, the incumbent, the proposer LLM, and
the result (every evaluated chain with the budget spent when it was paid).

Accounting is the planner's and lives in the ``Environment`` (``evaluate_at``: paired, multi-fidelity):
the budget counts chain evaluations on the same ``eval_examples`` val examples (the environment's
search order), the first of which is the initial chain's, and/or LLM calls (example evaluations). A
baseline that evaluates a chain on fewer examples (APE's successive halving) pays the fraction it
evaluates, and a (chain, example) pair is never paid twice. Only chains evaluated on all search examples can become the
incumbent, which is what the search returns; the search reads its budget only to stop, so the chain it
held after B evaluations is exactly what a run with budget B returns (``SearchResult.best_at``).

Proposals (APE, OPRO, EvoPrompt) are greedy generations of a proposer LLM, the same frozen model by
default. Their requests are counted apart from the budget, in ``costs["proposer"]``; TaP makes none.
The held-out test split is never read here.
"""

from __future__ import annotations

import random
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from tqdm import tqdm

from tap.chains import edit_space, initial_chain
from tap.chains.chain import Chain, Demo
from tap.chains.edits import Edit, replay
from tap.chains.induce import Induction, clean_instruction
from tap.env import Environment, Evaluation, check_budgets
from tap.errors import BudgetExhausted, ChainError, TapError
from tap.llm.base import LLM, GenerationSettings
from tap.tasks import Task

_EPS = 1e-9


@dataclass
class SearchRecord:
    """One real evaluation a baseline paid for."""

    evals: float  # budget spent once this evaluation was paid (in chain evaluations)
    chain: dict  # Chain.to_dict()
    edits: list[dict]  # edits from the initial chain to this one (they replay to it)
    examples: int  # search examples evaluated (fewer than all: a minibatch)
    accuracy: float
    dense: float
    note: str = ""  # how the chain was made (e.g. "proposal", "crossover", "edit token.add")
    accepted: bool = False  # it became the incumbent
    calls: int = 0  # LLM calls (example evaluations) spent once this evaluation was paid
    predicted: float | None = None  # what a model predicted for this chain's change (model-guided searches)
    uncertainty: float | None = None  # the model's uncertainty of that prediction


@dataclass
class SearchResult:
    """A baseline run: the chains it evaluated, the one it returns, and what it cost."""

    task: str
    method: str
    seed: int
    budget: int
    initial_chain: Chain
    final_chain: Chain
    initial_search: dict
    final_search: dict
    records: list[SearchRecord]
    edits: list[dict]  # initial -> final
    costs: dict
    config: dict = field(default_factory=dict)

    def check_replay(self) -> Chain:
        if replay(self.initial_chain, self.edits) != self.final_chain:
            raise AssertionError("the recorded edits do not replay to the final chain")
        return self.final_chain

    def best_at(self, evals: float | None = None, calls: int | None = None) -> tuple[Chain, list[dict], float]:
        """The incumbent after ``evals`` chain evaluations and/or ``calls`` LLM calls (what a run with that
        budget returns), its edits from the initial chain and its search accuracy.
        """
        held = [r for r in self.records if r.accepted and (evals is None or r.evals <= evals + _EPS)
                and (calls is None or r.calls <= calls)]
        if not held:
            return self.initial_chain, [], self.initial_search["accuracy"]
        return Chain.from_dict(held[-1].chain), held[-1].edits, held[-1].accuracy

    def calls_at(self, evals: float) -> int:
        """LLM calls (example evaluations) the search had spent once ``evals`` chain evaluations were spent."""
        return max((r.calls for r in self.records if r.evals <= evals + 1e-9), default=0)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "method": self.method, "seed": self.seed, "budget": self.budget,
                "config": self.config, "initial_chain": self.initial_chain.to_dict(),
                "final_chain": self.final_chain.to_dict(), "initial_search": self.initial_search,
                "final_search": self.final_search, "costs": self.costs, "edits": self.edits,
                "records": [asdict(r) for r in self.records]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchResult:
        return cls(data["task"], data["method"], data["seed"], data["budget"], Chain.from_dict(data["initial_chain"]),
                   Chain.from_dict(data["final_chain"]), data["initial_search"], data["final_search"],
                   [SearchRecord(**r) for r in data["records"]], data["edits"], data["costs"], data.get("config", {}))

    def save(self, out_dir: str | Path) -> Path:
        """Write ``search.json`` and ``final_chain.json`` (atomically)."""
        import json

        from tap.paths import write_atomic

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "final_chain.json", json.dumps(self.final_chain.to_dict(), indent=1, ensure_ascii=False))
        return write_atomic(out / "search.json", json.dumps(self.to_dict(), indent=1, ensure_ascii=False))


def _key(ev: Evaluation) -> tuple[float, float]:
    """What every search maximises, as the planner does: accuracy, ties broken by gold-answer probability."""
    return ev.accuracy, ev.dense


class Search(ABC):
    """A baseline chain search on the real LLM under a budget of chain evaluations.

    Subclasses implement ``search`` with ``evaluate`` (pays, updates the incumbent) and ``propose``
    (asks the proposer LLM); ``run`` stops them when the budget is spent and builds the result.

    Args:
        llm: the frozen LLM (normally a ``CachedLLM``).
        task: the task (its test split is never used).
        budget: chain evaluations on the search examples the search may spend (initial chain included);
            None: only ``budget_calls`` limits the search.
        budget_calls: LLM calls (example evaluations) the search may spend (None: no such limit).
        seed: seeds every random choice; with the LLM cache the run is reproducible.
        eval_examples: val examples each full evaluation uses (the planner's ``eval_examples``).
        mode: ``auto`` | ``generate`` | ``score`` (see ``tap.env``).
        max_new_tokens: generation length of the evaluated chains.
        proposer: the LLM that writes proposals (default: ``llm``).
        proposer_tokens: generation length of a proposal.
        max_stall: proposer requests in a row without a newly paid evaluation after which the search
            stops (a proposer that only repeats evaluated chains would otherwise never spend the budget).
        initial: the starting chain (default: the task's own instruction).
        progress: show a progress bar over the budget.
        induction: instructions induced for the task (``tap.chains.induce``), added to the edit space; their
            cost is reported in ``costs["induction"]`` (never charged to the budget).
        order_seed: reshuffle the search examples with this seed (None: the val split's order).
    """

    name: ClassVar[str] = ""

    def __init__(self, llm: LLM, task: Task, budget: int | None, seed: int = 0, eval_examples: int = 16,
                 mode: str = "auto", max_new_tokens: int = 24, proposer: LLM | None = None,
                 proposer_tokens: int = 64, max_stall: int = 40, initial: Chain | None = None,
                 progress: bool = True, budget_calls: int | None = None, induction: Induction | None = None,
                 order_seed: int | None = None) -> None:
        check_budgets(budget, budget_calls)
        if eval_examples < 1:
            raise TapError(f"eval_examples must be >= 1, got {eval_examples}.")
        self.llm, self.task, self.budget, self.budget_calls, self.seed = llm, task, budget, budget_calls, seed
        self.proposer = proposer or llm
        self.proposer_tokens = proposer_tokens
        self.max_stall = max_stall
        self._stall = 0
        if not (task.val or task.train):
            raise TapError(f"{task.name} has no train or val examples to search on.")
        self.env = Environment(llm, task, mode=mode, generation=GenerationSettings(max_new_tokens=max_new_tokens),  # type: ignore[arg-type]
                               budget=budget, budget_calls=budget_calls, eval_examples=eval_examples,
                               order_seed=order_seed)
        self.examples = self.env.order[: self.env.eval_examples]
        self.order_seed = order_seed
        self.induction = induction
        self.space = edit_space(task, induced=induction.instructions if induction else ())
        self.demo_pool: list[Demo] = list(self.space.demo_pool)
        self.start = (initial or initial_chain(task.description)).validate()
        self.rng = random.Random(f"baseline:{self.name}:{task.name}:{seed}")
        self.progress = progress
        self._full: dict[str, tuple[Evaluation, list[dict]]] = {}  # chain json -> full evaluation, edits
        self.records: list[SearchRecord] = []
        self.best: Chain = self.start
        self.best_eval: Evaluation | None = None
        self.best_edits: list[dict] = []
        self.proposals = {"requests": 0, "llm_calls": 0, "cache_hits": 0}
        self._bar: tqdm | None = None

    # ---- the two things a search does ----------------------------------------------------------
    def evaluate(self, chain: Chain, edits: Sequence[Edit | dict], n: int | None = None,
                 note: str = "", predicted: float | None = None, uncertainty: float | None = None) -> Evaluation:
        """Evaluate ``chain`` (reached from the initial chain by ``edits``) on the first ``n`` search
        examples (default: all), paying for the pairs not paid before. Raises ``BudgetExhausted`` when
        the budget cannot pay for it; a full evaluation that beats the incumbent replaces it.
        ``predicted`` / ``uncertainty``: what a model said of it, kept in the record.
        """
        chain.validate()
        n = min(n or len(self.examples), len(self.examples))
        full = n == len(self.examples)
        key = chain.to_json()
        if full and key in self._full:
            return self._full[key][0]
        before = self._progress()
        ev = self.env.evaluate_at(chain, n)
        self._stall = 0 if ev.example_evals > 0 else self._stall
        if self._bar is not None:
            self._bar.update(self._progress() - before)
        path = [e.to_dict() if isinstance(e, Edit) else dict(e) for e in edits]
        rec = SearchRecord(round(self.env.chain_evals, 6), chain.to_dict(), path, n, ev.accuracy, ev.dense, note,
                           calls=self.env.example_evals, predicted=predicted, uncertainty=uncertainty)
        self.records.append(rec)
        if full:
            self._full[key] = (ev, path)
            if self.best_eval is None or _key(ev) > _key(self.best_eval):
                rec.accepted = True
                self.best, self.best_eval, self.best_edits = chain, ev, path
                if self._bar is not None:
                    self._bar.set_postfix(best=f"{ev.accuracy:.3f}")
        return ev

    def propose(self, requests: Sequence[list[dict[str, str]]]) -> list[str | None]:
        """Greedy generations of the proposer LLM, one per chat in ``requests`` (one batch), each cleaned
        to an instruction by ``clean_instruction`` (None where the reply holds none). Counted in
        ``costs['proposer']``; raises ``BudgetExhausted`` (ending the search) once ``max_stall`` requests in
        a row led to no newly paid evaluation.
        """
        if self._stall >= self.max_stall:
            raise BudgetExhausted(f"the proposer made {self.max_stall} requests in a row without a new chain.")
        self._stall += len(requests)
        calls0, hits0 = getattr(self.proposer, "calls", 0), getattr(self.proposer, "hits", 0)
        settings = GenerationSettings(max_new_tokens=self.proposer_tokens, stop=("\n\n",))
        prompts = [self.proposer.format_chat(list(m)) for m in requests]
        replies = self.proposer.generate(prompts, settings) if prompts else []
        self.proposals["requests"] += len(prompts)
        self.proposals["llm_calls"] += getattr(self.proposer, "calls", 0) - calls0
        self.proposals["cache_hits"] += getattr(self.proposer, "hits", 0) - hits0
        return [clean_instruction(r, echo="\n".join(m["content"] for m in req)) for r, req in zip(replies, requests)]

    def known(self, chain: Chain) -> bool:
        """Whether ``chain`` already has a full evaluation (a repeat costs nothing and teaches nothing)."""
        return chain.to_json() in self._full

    def score_of(self, chain: Chain) -> Evaluation:
        """The full evaluation of an already evaluated chain."""
        return self._full[chain.to_json()][0]

    def with_instruction(self, text: str) -> tuple[Chain, list[Edit]]:
        """The initial chain with instruction ``text``, and the edit that makes it."""
        if text.strip() == self.start.instruction:
            return self.start, []
        edit = Edit("instruction", "instruction_edit", (), text.strip())
        return replace(self.start, instruction=text.strip()), [edit]

    def demos(self, k: int, rng: random.Random | None = None) -> list[Demo]:
        """``k`` distinct train demonstrations drawn with ``rng`` (default: the search's)."""
        return (rng or self.rng).sample(self.demo_pool, min(k, len(self.demo_pool)))

    @abstractmethod
    def search(self) -> None:
        """Spend the budget through ``evaluate``; return when done (or let ``BudgetExhausted`` end it)."""

    # ---- running -----------------------------------------------------------------------------
    @property
    def spent(self) -> float:
        """Chain evaluations spent so far."""
        return self.env.chain_evals

    def _progress(self) -> float:
        """Budget spent in the unit the progress bar counts (chain evaluations unless only calls limit)."""
        return self.env.chain_evals if self.budget is not None else self.env.example_evals

    def config(self) -> dict:
        """The search's settings, recorded in its result."""
        skip = {"llm", "task", "proposer", "env", "space", "demo_pool", "start", "rng", "progress", "examples",
                "records", "best", "best_eval", "best_edits", "proposals", "spent", "induction"}
        out = {k: v for k, v in vars(self).items() if not k.startswith("_") and k not in skip}
        return {**out, "eval_examples": len(self.examples), "proposer": getattr(self.proposer, "name", ""),
                "induced": list(self.induction.instructions) if self.induction else []}

    def run(self) -> SearchResult:
        """Evaluate the initial chain, search until the budget (or the method) stops, return the result."""
        t0 = time.time()
        llm_calls0, hits0 = getattr(self.llm, "calls", 0), getattr(self.llm, "hits", 0)
        unit = "eval" if self.budget is not None else "call"
        self._bar = tqdm(total=self.budget or self.budget_calls, desc=f"{self.name} {self.task.name}", unit=unit,
                         disable=not self.progress, bar_format="{l_bar}{bar}| {n:.1f}/{total} [{elapsed}{postfix}]")
        try:
            first = self.evaluate(self.start, [], note="initial")
            try:
                self.search()
            except BudgetExhausted:
                pass
        finally:
            self._bar.close()
            self._bar = None
        assert self.best_eval is not None
        total_calls = getattr(self.llm, "calls", 0) - llm_calls0
        total_hits = getattr(self.llm, "hits", 0) - hits0
        same = self.proposer is self.llm
        env_costs = self.env.costs()
        costs = {
            "search": {"chain_evals": env_costs["chain_evals"], "example_evals": env_costs["example_evals"],
                       "llm_requests": env_costs["llm_calls"] + env_costs["cache_hits"],
                       "llm_calls": env_costs["llm_calls"], "cache_hits": env_costs["cache_hits"],
                       "examples_per_eval": len(self.examples), "budget_calls": self.budget_calls,
                       "seconds": round(time.time() - t0, 2)},
            "proposer": {**self.proposals, "model": getattr(self.proposer, "name", ""), "same_as_target": same},
            "induction": self.induction.costs() if self.induction else {"induced": 0, "requests": 0},
            "all_llm_calls": total_calls if same else total_calls + self.proposals["llm_calls"],
            "all_cache_hits": total_hits if same else total_hits + self.proposals["cache_hits"],
        }
        result = SearchResult(self.task.name, self.name, self.seed, self.budget, self.start, self.best,
                              {"accuracy": first.accuracy, "dense": first.dense},
                              {"accuracy": self.best_eval.accuracy, "dense": self.best_eval.dense},
                              self.records, self.best_edits, costs, self.config())
        result.check_replay()
        return result


def demo_edits(demos: Sequence[Demo]) -> list[Edit]:
    """The edits that add ``demos`` (in order) to a chain without demonstrations."""
    return [Edit("instruction", "add_example", (i,), {"uid": d.uid, "input": d.input, "output": d.output})
            for i, d in enumerate(demos)]


def safe(chain_fn) -> Chain | None:
    """``chain_fn()``, or None when the chain it builds is invalid (e.g. emptied by a deletion)."""
    try:
        return chain_fn().validate()
    except (ChainError, TapError):
        return None
