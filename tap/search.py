"""What every search shares, TaP's and the baselines': the budgeted real evaluation, the incumbent, the
proposer LLM, one record of every paid evaluation, and one result type.

Accounting lives in the ``Environment`` (``evaluate_at``: paired, multi-fidelity), the one holder of
the budget: chain evaluations on the same ``eval_examples`` val examples (the environment's search
order), the first of which is the initial chain's, and/or LLM calls (example evaluations). A search
that evaluates a chain on fewer examples (a minibatch, a lower rung of successive halving) pays the
fraction it evaluates, and a (chain, example) pair is never paid twice. Only chains evaluated on all
search examples can become the incumbent, which is what the search returns, unless the search's own
paired test accepts one early (``accept_early``: successive halving's race), in which case the rest of its
examples are paid before any full evaluation is compared with it; a search reads its budget
only to stop, so the chain it held after B evaluations (or C calls) is exactly what a run with that
budget returns (``SearchResult.best_at``).

Words, one meaning each: an **LLM call** is one example evaluation (one example through the model for one chain:
its reply and gold-answer score, or every option's score), what ``budget_calls`` and ``SearchRecord.calls``
count whatever the cache holds; ``llm_calls`` in costs and evaluations counts the calls actually **paid** (not
answered by the on-disk cache, ``cache_hits``); ``llm_requests`` is both together.

Proposals (APE, OPRO, EvoPrompt) are greedy generations of a proposer LLM, the same frozen model by
default. Their requests are counted apart from the budget, in ``costs["proposer"]``; TaP makes none.
The held-out test split is never read by a search.
"""

from __future__ import annotations

import json
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
from tap.chains.render import plain_prompt, render_messages
from tap.env import Environment, Evaluation, check_budgets
from tap.errors import BudgetExhausted, TapError
from tap.llm.base import LLM, GenerationSettings
from tap.paths import write_atomic
from tap.tasks import Task

_EPS = 1e-9


@dataclass
class SearchRecord:
    """One real evaluation a search paid for (at any fidelity), and what a model said of it, if any."""

    evals: float  # chain evaluations spent once this evaluation was paid (the ``budget`` unit)
    chain: dict  # Chain.to_dict()
    edits: list[dict]  # edits from the initial chain to this one (they replay to it)
    examples: int  # search examples evaluated (fewer than all: a minibatch or a lower rung)
    accuracy: float
    dense: float
    note: str = ""  # how the chain was made (e.g. "proposal", "crossover", "edit token.add", "rung 8: ...")
    accepted: bool = False  # it became the incumbent
    calls: int = 0  # LLM calls spent once this evaluation was paid: example evaluations, the ``budget_calls`` unit
    predicted: float | None = None  # what a model predicted for this chain (model-guided searches)
    uncertainty: float | None = None  # the model's uncertainty of that prediction
    step: int | None = None  # the search's step or round
    edit: dict | None = None  # the edit tried at this step (the last of ``edits``)
    requests: int = 0  # LLM requests of the search so far (paid and from the cache)

    def line(self) -> str:
        """One line for a log: what was tried, predicted and measured, the budget spent, the decision."""
        what = Edit.from_dict(self.edit).describe() if self.edit else (self.note or "initial chain")
        guess = "" if self.predicted is None else f"predicted {self.predicted:.3f} ± {self.uncertainty or 0.0:.3f}  "
        step = f"step {self.step:>3}  " if self.step is not None else ""
        return (f"{step}{what[:70]:<70}  {guess}measured {self.accuracy:.3f} (dense {self.dense:.3f})  "
                f"evals {self.evals:g}  calls {self.calls}  {'accepted' if self.accepted else 'rejected'}")

    @classmethod
    def from_dict(cls, d: dict) -> SearchRecord:
        """Also reads the planner's records written before searches shared one record (``measured``,
        ``chain_evals``, ``example_evals``, ``llm_calls``; no chain or path: ``best_at`` replays the edits).
        """
        if "measured" in d:
            return cls(d["chain_evals"], {}, [], 0, d["measured"], d["dense"], accepted=d.get("accepted", False),
                       calls=d.get("example_evals", 0), predicted=d.get("predicted"),
                       uncertainty=d.get("uncertainty"), step=d.get("step"), edit=d.get("edit"),
                       requests=d.get("llm_calls", 0))
        return cls(**d)


@dataclass
class SearchResult:
    """A search run (TaP's or a baseline's): the chains it evaluated, the one it returns, the accepted
    edits, what it cost, and (when asked) the initial and final chains' accuracy on held-out test data.

    ``replay(initial_chain, edits) == final_chain`` always holds (``check_replay``).
    """

    task: str
    method: str
    seed: int
    budget: int | None
    initial_chain: Chain
    final_chain: Chain
    initial_search: dict  # accuracy, dense on the search examples
    final_search: dict
    records: list[SearchRecord]
    edits: list[dict]  # initial -> final
    costs: dict
    config: dict = field(default_factory=dict)
    test: dict = field(default_factory=dict)  # {"initial": {...}, "final": {...}} on the held-out test split
    checkpoint: str = ""  # the world model it planned with, if any

    def check_replay(self) -> Chain:
        if replay(self.initial_chain, self.edits) != self.final_chain:
            raise AssertionError("the recorded edits do not replay to the final chain")
        return self.final_chain

    def best_at(self, evals: float | None = None, calls: int | None = None) -> tuple[Chain, list[dict], float]:
        """The incumbent after ``evals`` chain evaluations and/or ``calls`` LLM calls (what a run with that
        budget returns: every search reads its budget only to stop), its edits from the initial chain and
        its search accuracy (on the most search examples paid for it by then: an incumbent held on fewer, accepted
        early or a lazy start, may have paid more since).
        """
        def by(r: SearchRecord) -> bool:
            return (evals is None or r.evals <= evals + _EPS) and (calls is None or r.calls <= calls)

        held = [r for r in self.records if r.accepted and by(r)]
        if not held:
            return self.initial_chain, [], self.initial_search["accuracy"]
        last = held[-1]
        edits = last.edits if last.chain else [r.edit for r in held if r.edit]  # older planner records: no path
        more = [r for r in self.records
                if last.chain and by(r) and r.chain == last.chain and r.examples > last.examples]
        return replay(self.initial_chain, edits), edits, max(more or [last], key=lambda r: r.examples).accuracy

    def calls_at(self, evals: float) -> int:
        """LLM calls (example evaluations) the search had spent once ``evals`` chain evaluations were spent."""
        initial = self.costs["search"].get("examples_per_eval", 0)  # the initial evaluation, in older records
        return max((r.calls for r in self.records if r.evals <= evals + _EPS), default=initial)

    def prompt_text(self, chain: Chain | None = None) -> str:
        """The chain as plain prompt text, with ``{question}`` where each question goes."""
        return plain_prompt(render_messages(chain or self.final_chain, "{question}"))

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "method": self.method, "seed": self.seed, "budget": self.budget,
                "checkpoint": self.checkpoint, "config": self.config,
                "initial_chain": self.initial_chain.to_dict(), "final_chain": self.final_chain.to_dict(),
                "initial_search": self.initial_search, "final_search": self.final_search,
                "test": self.test, "costs": self.costs, "edits": self.edits,
                "records": [asdict(r) for r in self.records]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchResult:
        return cls(data["task"], data["method"], data["seed"], data["budget"], Chain.from_dict(data["initial_chain"]),
                   Chain.from_dict(data["final_chain"]), data["initial_search"], data["final_search"],
                   [SearchRecord.from_dict(r) for r in data["records"]], data["edits"], data["costs"],
                   data.get("config", {}), data.get("test", {}), data.get("checkpoint", ""))

    @classmethod
    def load(cls, path: str | Path) -> SearchResult:
        """From a result file, or a folder ``save`` wrote (``plan.json``; ``search.json`` of older baselines)."""
        path = Path(path)
        if path.is_dir():
            path = path / "plan.json" if (path / "plan.json").exists() else path / "search.json"
        return cls.from_dict(json.loads(path.read_text()))

    def to_markdown(self) -> str:
        t = self.test
        budget = f"budget {self.budget} chain evaluations" if self.budget is not None else "no chain-evaluation budget"
        calls = self.costs.get("search", {}).get("budget_calls")
        lines = [f"# TaP search: {self.task}", "",
                 f"method `{self.method}`, seed {self.seed}, {budget}"
                 + (f", {calls} LLM calls" if calls else "") + (f", checkpoint `{self.checkpoint}`" if self.checkpoint
                                                                 else ""), "",
                 "| | search accuracy | search dense | test accuracy |", "|---|---|---|---|"]
        for name in ("initial", "final"):
            s = getattr(self, f"{name}_search")
            acc = f"{t[name]['accuracy']:.3f} (n={t[name]['n']})" if name in t else "-"
            lines.append(f"| {name} | {s['accuracy']:.3f} | {s['dense']:.3f} | {acc} |")
        lines += ["", "## Verified edits", "",
                  "| step | edit | predicted | uncertainty | measured | dense | examples | evals | LLM calls | |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in self.records:
            what = (Edit.from_dict(r.edit).describe() if r.edit else r.note).replace("|", "\\|")
            guess = (f"{r.predicted:.3f} | {r.uncertainty or 0.0:.3f}" if r.predicted is not None else "- | -")
            lines.append(f"| {'' if r.step is None else r.step} | `{what}` | {guess} | {r.accuracy:.3f} | "
                         f"{r.dense:.3f} | {r.examples or '-'} | {r.evals:g} | {r.calls} | "
                         f"{'accepted' if r.accepted else ''} |")
        lines += ["", "## Initial chain", "", "```", self.initial_chain.describe(), "```", "",
                  "## Final chain", "", "```", self.final_chain.describe(), "```", "",
                  "## Costs", "", "```json", json.dumps(self.costs, indent=1), "```", ""]
        return "\n".join(lines)

    def save(self, out_dir: str | Path) -> Path:
        """Write ``plan.json`` (everything; ``SearchResult.load`` reads it), ``plan.md``, ``final_chain.json``
        (loadable by ``Chain.from_json``) and ``final_prompt.txt``, each atomically; returns plan.json's path.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "plan.md", self.to_markdown())
        write_atomic(out / "final_chain.json", json.dumps(self.final_chain.to_dict(), indent=1, ensure_ascii=False))
        write_atomic(out / "final_prompt.txt", self.prompt_text())
        return write_atomic(out / "plan.json", json.dumps(self.to_dict(), indent=1, ensure_ascii=False))


def search_key(ev: Evaluation) -> tuple[float, float]:
    """What every search maximises: accuracy, ties broken by gold-answer probability."""
    return ev.accuracy, ev.dense


class Search(ABC):
    """A chain search on the real LLM under a budget of chain evaluations and/or LLM calls.

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
        self.rng = random.Random(f"baseline:{getattr(self, 'stream', self.name)}:{task.name}:{seed}")
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
        if full and self.incumbent_partial and key != self.best.to_json():
            self.complete_incumbent()  # a full evaluation is compared with the incumbent on the same examples
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
            if self.best_eval is None or search_key(ev) > search_key(self.best_eval):
                rec.accepted = True
                self.best, self.best_eval, self.best_edits = chain, ev, path
                if self._bar is not None:
                    self._bar.set_postfix(best=f"{ev.accuracy:.3f}")
        return ev

    @property
    def incumbent_partial(self) -> bool:
        """Whether the incumbent was accepted early, on fewer than all search examples (``accept_early``)."""
        return self.best_eval is not None and len(self.best_eval.results) < len(self.examples)

    def accept_early(self, chain: Chain, ev: Evaluation, record: SearchRecord, why: str = "") -> None:
        """Make ``chain`` the incumbent on a partial evaluation ``ev`` (its ``record``, already paid): for a
        search whose own test says it beats the incumbent decisively on the same examples (successive
        halving's ``early_accept``). The acceptance is a record of its own at the budget spent when it was
        decided (later than ``record`` when other evaluations came before the decision), so the chain held
        after C calls stays what a run with budget C returns. The rest of its examples are paid when a full
        evaluation of another chain needs them (``complete_incumbent``), so acceptance stays paired.
        """
        self.records.append(replace(record, evals=round(self.env.chain_evals, 6), calls=self.env.example_evals,
                                    note=f"accepted early ({why}): {record.note}" if why else
                                    f"accepted early: {record.note}", accepted=True))
        self.best, self.best_eval, self.best_edits = chain, ev, list(record.edits)
        if self._bar is not None:
            self._bar.set_postfix(best=f"{ev.accuracy:.3f} (n={len(ev.results)})")

    def complete_incumbent(self) -> Evaluation:
        """Evaluate an early-accepted incumbent on all search examples, paying the ones not paid yet
        (``BudgetExhausted`` if the budget cannot); it stays the incumbent whatever the rest shows.
        """
        if not self.incumbent_partial:
            assert self.best_eval is not None
            return self.best_eval
        before = self._progress()
        ev = self.env.evaluate_at(self.best, None)
        if self._bar is not None:
            self._bar.update(self._progress() - before)
        self.records.append(SearchRecord(round(self.env.chain_evals, 6), self.best.to_dict(), list(self.best_edits),
                                         len(self.examples), ev.accuracy, ev.dense, "incumbent completed",
                                         calls=self.env.example_evals))
        self._full[self.best.to_json()] = (ev, list(self.best_edits))
        self.best_eval = ev
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

    def evaluate_initial(self) -> Evaluation:
        """Evaluate the initial chain, the first incumbent: on every search example (a search that compares on
        fewer, ``SuccessiveHalvingSearch(lazy_initial=True)``, pays only what its comparisons need).
        """
        return self.evaluate(self.start, [], note="initial")

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
            first = self.evaluate_initial()
            try:
                self.search()
            except BudgetExhausted:
                pass
        finally:
            self._bar.close()
            self._bar = None
        assert self.best_eval is not None
        # chains held on fewer examples (a lazy start, an incumbent accepted early): reported on all that were paid
        if len(first.results) < (paid := self.env.paid_prefix(self.start)):
            first = self.env.reread(self.start, paid)
        if len(self.best_eval.results) < (paid := self.env.paid_prefix(self.best)):
            self.best_eval = self.env.reread(self.best, paid)
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
                              {"accuracy": first.accuracy, "dense": first.dense, "examples": len(first.results)},
                              {"accuracy": self.best_eval.accuracy, "dense": self.best_eval.dense,
                               "examples": len(self.best_eval.results)},
                              self.records, self.best_edits, costs, self.config())
        result.check_replay()
        return result
