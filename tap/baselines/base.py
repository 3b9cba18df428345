"""What every baseline search shares: the budgeted real evaluation, the incumbent, the proposer LLM, and
the result (every evaluated chain with the budget spent when it was paid).

Accounting is the planner's: the budget counts chain evaluations on the same ``eval_examples`` val
examples (``task.val[:eval_examples]``), the first of which is the initial chain's. A baseline that
evaluates a chain on fewer examples (APE's successive halving) pays the fraction it evaluates, and a
(chain, example) pair is never paid twice. Only chains evaluated on all search examples can become the
incumbent, which is what the search returns; the search reads its budget only to stop, so the chain it
held after B evaluations is exactly what a run with budget B returns (``SearchResult.best_at``).

Proposals (APE, OPRO, EvoPrompt) are greedy generations of a proposer LLM, the same frozen model by
default. Their requests are counted apart from the budget, in ``costs["proposer"]``; TaP makes none.
The held-out test split is never read here.
"""

from __future__ import annotations

import random
import re
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
from tap.env import Environment, Evaluation
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

    def best_at(self, evals: float) -> tuple[Chain, list[dict], float]:
        """The incumbent after ``evals`` chain evaluations (what a run with that budget returns), its edits
        from the initial chain and its search accuracy.
        """
        held = [r for r in self.records if r.accepted and r.evals <= evals + _EPS]
        if not held:
            return self.initial_chain, [], self.initial_search["accuracy"]
        return Chain.from_dict(held[-1].chain), held[-1].edits, held[-1].accuracy

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

        from tap.planning.result import write_atomic

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "final_chain.json", json.dumps(self.final_chain.to_dict(), indent=1, ensure_ascii=False))
        return write_atomic(out / "search.json", json.dumps(self.to_dict(), indent=1, ensure_ascii=False))


def _key(ev: Evaluation) -> tuple[float, float]:
    """What every search maximises, as the planner does: accuracy, ties broken by gold-answer probability."""
    return ev.accuracy, ev.dense


_LABEL = re.compile(r"^\s*(?:[-*•>#]+\s*|\d+[.)]\s*)?(?:(?:new |final |improved |the )?"
                    r"(?:instruction|prompt|answer|output|text)s?\s*(?:\d+)?\s*[:=]\s*)?", re.IGNORECASE)
_RESTATED = re.compile(r"^(?:the )?instruction (?:is|was) (?:to )?", re.IGNORECASE)
_TAGS = re.compile(r"</?\s*(?:ins|prompt|instruction)\s*>", re.IGNORECASE)


def clean_instruction(text: str, echo: str = "", max_words: int = 60) -> str | None:
    """The instruction in a proposer's reply: the text inside ``<prompt>``/``<INS>`` tags if any, else the
    first line that is not an echo of the request (``echo``), without list markers, labels
    ("Instruction:", "The instruction is to") and quotes; None if no line holds a usable instruction.
    """
    tagged = re.search(r"<\s*(ins|prompt)\s*>(.*?)(?:<\s*/\s*\1\s*>|$)", text, re.IGNORECASE | re.DOTALL)
    body = tagged.group(2) if tagged else text
    seen = echo.lower()
    for raw in body.splitlines():
        line = _LABEL.sub("", _TAGS.sub(" ", raw).strip()).strip().strip("\"'`“”").strip()
        line = _RESTATED.sub("", line).strip()
        words = line.split()
        if len(words) < 2 or sum(c.isalpha() for c in line) < 5 or line.lower().rstrip(":.") in seen:
            continue
        line = " ".join(words[:max_words])
        return line[0].upper() + line[1:]
    return None


class Search(ABC):
    """A baseline chain search on the real LLM under a budget of chain evaluations.

    Subclasses implement ``search`` with ``evaluate`` (pays, updates the incumbent) and ``propose``
    (asks the proposer LLM); ``run`` stops them when the budget is spent and builds the result.

    Args:
        llm: the frozen LLM (normally a ``CachedLLM``).
        task: the task (its test split is never used).
        budget: chain evaluations on the search examples the search may spend (initial chain included).
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
    """

    name: ClassVar[str] = ""

    def __init__(self, llm: LLM, task: Task, budget: int, seed: int = 0, eval_examples: int = 16,
                 mode: str = "auto", max_new_tokens: int = 24, proposer: LLM | None = None,
                 proposer_tokens: int = 64, max_stall: int = 40, initial: Chain | None = None,
                 progress: bool = True) -> None:
        if not isinstance(budget, int) or budget < 1:
            raise TapError(f"budget must be a positive number of chain evaluations, got {budget!r}; the initial "
                           "chain's evaluation already takes one.")
        if eval_examples < 1:
            raise TapError(f"eval_examples must be >= 1, got {eval_examples}.")
        self.llm, self.task, self.budget, self.seed = llm, task, budget, seed
        self.proposer = proposer or llm
        self.proposer_tokens = proposer_tokens
        self.max_stall = max_stall
        self._stall = 0
        self.examples = task.val[:eval_examples] or task.train[:eval_examples]
        if not self.examples:
            raise TapError(f"{task.name} has no train or val examples to search on.")
        self.env = Environment(llm, task, mode=mode, generation=GenerationSettings(max_new_tokens=max_new_tokens))  # type: ignore[arg-type]
        self.space = edit_space(task)
        self.demo_pool: list[Demo] = list(self.space.demo_pool)
        self.start = (initial or initial_chain(task.description)).validate()
        self.rng = random.Random(f"baseline:{self.name}:{task.name}:{seed}")
        self.progress = progress
        self._paid: set[tuple[str, int]] = set()  # (chain json, example uid) pairs paid for
        self._full: dict[str, tuple[Evaluation, list[dict]]] = {}  # chain json -> full evaluation, edits
        self.spent = 0.0
        self.records: list[SearchRecord] = []
        self.best: Chain = self.start
        self.best_eval: Evaluation | None = None
        self.best_edits: list[dict] = []
        self.proposals = {"requests": 0, "llm_calls": 0, "cache_hits": 0}
        self._bar: tqdm | None = None

    # ---- the two things a search does ----------------------------------------------------------
    def evaluate(self, chain: Chain, edits: Sequence[Edit | dict], n: int | None = None,
                 note: str = "") -> Evaluation:
        """Evaluate ``chain`` (reached from the initial chain by ``edits``) on the first ``n`` search
        examples (default: all), paying for the pairs not paid before. Raises ``BudgetExhausted`` when
        the budget cannot pay for it; a full evaluation that beats the incumbent replaces it.
        """
        chain.validate()
        examples = self.examples[: n or len(self.examples)]
        full = len(examples) == len(self.examples)
        key = chain.to_json()
        if full and key in self._full:
            return self._full[key][0]
        new = [ex.uid for ex in examples if (key, ex.uid) not in self._paid]
        cost = len(new) / len(self.examples)
        if self.spent >= self.budget - _EPS or self.spent + cost > self.budget + _EPS:
            raise BudgetExhausted(f"the budget of {self.budget} chain evaluations is spent.")
        ev = self.env.evaluate(chain, examples)
        self._paid.update((key, uid) for uid in new)
        self.spent += cost
        self._stall = 0 if cost > 0 else self._stall
        if self._bar is not None:
            self._bar.update(cost)
        path = [e.to_dict() if isinstance(e, Edit) else dict(e) for e in edits]
        rec = SearchRecord(round(self.spent, 6), chain.to_dict(), path, len(examples), ev.accuracy, ev.dense, note)
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
    def config(self) -> dict:
        """The search's settings, recorded in its result."""
        skip = {"llm", "task", "proposer", "env", "space", "demo_pool", "start", "rng", "progress", "examples",
                "records", "best", "best_eval", "best_edits", "proposals", "spent"}
        out = {k: v for k, v in vars(self).items() if not k.startswith("_") and k not in skip}
        return {**out, "eval_examples": len(self.examples), "proposer": getattr(self.proposer, "name", "")}

    def run(self) -> SearchResult:
        """Evaluate the initial chain, search until the budget (or the method) stops, return the result."""
        t0 = time.time()
        llm_calls0, hits0 = getattr(self.llm, "calls", 0), getattr(self.llm, "hits", 0)
        self._bar = tqdm(total=self.budget, desc=f"{self.name} {self.task.name}", unit="eval",
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
        spend = self.env.spend
        total_calls = getattr(self.llm, "calls", 0) - llm_calls0
        total_hits = getattr(self.llm, "hits", 0) - hits0
        same = self.proposer is self.llm
        costs = {
            "search": {"chain_evals": round(self.spent, 6), "llm_requests": sum(spend.llm_calls.values()) +
                       sum(spend.cache_hits.values()), "llm_calls": sum(spend.llm_calls.values()),
                       "cache_hits": sum(spend.cache_hits.values()), "examples_per_eval": len(self.examples),
                       "seconds": round(time.time() - t0, 2)},
            "proposer": {**self.proposals, "model": getattr(self.proposer, "name", ""), "same_as_target": same},
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
