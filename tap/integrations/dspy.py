"""TaP inside DSPy: a frozen TaP LLM as a DSPy LM, TaP's prompt rendering and answer judging as a DSPy adapter
and metric, and TaP's search as a DSPy optimizer.

    import dspy
    from tap.integrations.dspy import TapAdapter, TapLM, TapMetric, TaPOptimizer

    lm = TapLM("smollm2", budget=256)          # cached, counted, greedy; refuses call 257
    dspy.configure(lm=lm)
    program = dspy.Predict("input -> answer")
    best = TaPOptimizer(metric=TapMetric("surface"), budget_calls=256).compile(program, trainset=train, valset=val)
    with dspy.context(adapter=TapAdapter()):   # the prompts TaP's search measured, byte for byte
        print(best(input="apple pie").answer)

``TapLM`` is a ``dspy.LM`` (so a ``dspy.BaseLM``) over a custom engine, the interface DSPy 3.4 asks custom LMs to
implement (``complete(Request) -> Response``). DSPy's own response cache is off: every request goes through
TaP's call cache (``tap.llm.CachedLLM``) instead. Tested with dspy 3.4.1 (``pip install -e '.[dspy]'``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

try:
    import dspy
    from dspy.lm15 import Message, Response, TextPart, Usage
    from dspy.utils.exceptions import LMError
except ImportError as err:  # pragma: no cover - the optional extra is missing
    raise ImportError(f"tap.integrations.dspy needs DSPy: pip install -e '.[dspy]' ({err}).") from err

from tap.chains.chain import AnswerFormat, Chain, Demo
from tap.chains.library import GENERIC_INSTRUCTION
from tap.chains.render import system_text
from tap.errors import BudgetExhausted, TapError
from tap.llm import CachedLLM, CallCache, GenerationSettings, load_llm
from tap.llm.base import LLM
from tap.llm.cache import call_key
from tap.paths import cache_dir
from tap.tasks.answers import answer_region, judge
from tap.tasks.schema import Example, Task

T = TypeVar("T")

#: the generation settings TaP's search evaluates chains with (``PlanConfig.max_new_tokens``, TaP's stop)
TAP_MAX_TOKENS, TAP_STOP = 24, ("\n\n",)


class CallBudgetExceeded(LMError, BudgetExhausted):
    """A ``TapLM`` refused a request: its budget of LLM calls is spent. A ``dspy.utils.exceptions.LMError`` (DSPy
    passes it through unchanged and never retries it) and a ``tap.errors.BudgetExhausted``.
    """

    default_code = "call_budget"


class CallBudget:
    """Thread-safe count of the LLM calls charged to a run, shared by every ``TapLM`` of that run, with an optional
    limit. A call is one distinct request (model, prompt, decoding settings); the same request asked again in the
    same run is free, whatever the on-disk cache holds, so counts and budgets do not depend on earlier runs.

    ``calls``: distinct requests charged; ``repeats``: requests answered without a charge (asked before here).
    """

    def __init__(self, limit: int | None = None) -> None:
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise TapError(f"a call budget is a number of LLM calls >= 0 (or None: unlimited), got {limit!r}.")
        self.limit = limit
        self.calls = 0
        self.repeats = 0
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    @property
    def left(self) -> int | None:
        return None if self.limit is None else self.limit - self.calls

    def charge(self, key: str, model: str) -> bool:
        """Charge the request ``key`` (True: charged now; False: asked before, free); ``CallBudgetExceeded``
        when a new request would pass the limit.
        """
        with self._lock:
            if key in self._seen:
                self.repeats += 1
                return False
            if self.limit is not None and self.calls >= self.limit:
                raise CallBudgetExceeded(f"the budget of {self.limit} LLM calls is spent; raise the budget, or stop "
                                         "here (every answered call is cached and kept).", model=model)
            self._seen.add(key)
            self.calls += 1
            return True

    def refund(self, key: str) -> None:
        """Undo a charge whose call failed, so a retry is charged once."""
        with self._lock:
            if key in self._seen:
                self._seen.discard(key)
                self.calls -= 1


class _Engine:
    """The engine DSPy calls (``complete(Request) -> Response``): renders the request with the model's chat template
    and generates greedily through ``TapLM``.
    """

    def __init__(self, owner: TapLM) -> None:
        self.owner = owner

    def complete(self, request):
        system = request.system if isinstance(request.system, str | None) else "".join(p.text for p in request.system)
        messages = [{"role": "system", "content": system}] if system is not None else []
        messages += [{"role": m.role, "content": m.text or ""} for m in request.messages]
        cfg = request.config
        settings = GenerationSettings(cfg.max_tokens or self.owner.max_tokens, tuple(cfg.stop or self.owner.stop))
        text = self.owner.generate_messages(messages, settings)
        return Response(id=None, model=self.owner.model, message=Message.assistant([TextPart(text)]),
                        finish_reason="stop", usage=Usage())

    def stream(self, request):
        raise NotImplementedError("TapLM does not stream; call it without streaming.")

    def close(self) -> None:
        pass


class TapLM(dspy.LM):
    """A TaP frozen LLM as a DSPy LM: greedy, deterministic, every request through TaP's call cache, counted.

    All model and cache work runs on one worker thread of this LM (the cache's SQLite connection and the model
    belong to it), so DSPy's threads (``Evaluate(num_threads=...)``, optimizers) may call it at once; the count
    stays exact. Temperature, ``n`` and rollout ids do not change a reply (decoding is greedy).

    Args:
        llm: a model spec for ``tap.llm.load_llm`` (``smollm2``, a hub id or path, ``openai:<model>@<url>``) or an
            ``LLM`` (a ``CachedLLM``'s cache file is reopened on the worker thread; an in-memory cache starts empty).
        cache: the call cache for a spec or a bare ``LLM`` (``"default"``: ``<cache_dir>/calls.sqlite``; None: memory).
        budget: most LLM calls (an int), a ``CallBudget`` shared with other LMs of the run, or None (unlimited).
        max_tokens: reply length when a request does not set one.
        stop: stop strings when a request sets none (default: DSPy's end-of-reply marker).
    """

    def __init__(self, llm: str | LLM = "smollm2", cache: str | Path | None = "default",
                 budget: int | CallBudget | None = None, max_tokens: int = 64,
                 stop: Sequence[str] = ("[[ ## completed ## ]]",), **llm_kwargs: Any) -> None:
        self.budget = budget if isinstance(budget, CallBudget) else CallBudget(budget)
        self.max_tokens, self.stop = max_tokens, tuple(stop)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tap-lm")
        self.llm: CachedLLM = self._pool.submit(self._open, llm, cache, llm_kwargs).result()
        self._worker = self._pool.submit(threading.get_ident).result()
        super().__init__(f"tap/{self.llm.name}", cache=False, num_retries=0, engine=_Engine(self))

    @staticmethod
    def _open(llm: str | LLM, cache: str | Path | None, kwargs: dict) -> CachedLLM:
        if isinstance(llm, str):
            return load_llm(llm, cache=cache, **kwargs)
        if isinstance(llm, CachedLLM):
            return CachedLLM(llm.llm, CallCache(llm.cache.path), llm.chunk)
        return CachedLLM(llm, CallCache(cache_dir() / "calls.sqlite" if cache == "default" else cache))

    def __deepcopy__(self, memo: dict) -> TapLM:
        return self.copy()  # a runtime client: copies share the model, the worker and the budget

    @property
    def calls(self) -> int:
        """LLM calls charged to this LM's budget (distinct requests)."""
        return self.budget.calls

    @property
    def paid(self) -> int:
        """Requests the model really computed through this LM (not found in the on-disk cache)."""
        return self.llm.calls

    def run(self, fn: Callable[[CachedLLM], T]) -> T:
        """``fn(cached_llm)`` on this LM's worker thread: the way to use the same model and cache outside DSPy
        (TaP's search, a batched evaluation) without racing DSPy's threads.
        """
        if threading.get_ident() == self._worker:  # already on the worker (fn called back into this LM)
            return fn(self.llm)
        return self._pool.submit(fn, self.llm).result()

    def close(self) -> None:
        """Close the cache connection and stop the worker thread (the model stays loaded for other users)."""
        self._pool.submit(self.llm.cache.close).result()
        self._pool.shutdown()

    def generate_messages(self, messages: list[dict[str, str]], settings: GenerationSettings) -> str:
        """The greedy reply to chat ``messages``, charged to the budget unless asked before in this run."""
        prompt = self.llm.format_chat(messages)
        key = call_key(self.llm.name, "generate", asdict(settings), prompt)
        charged = self.budget.charge(key, self.model)
        try:
            return self.run(lambda llm: llm.generate([prompt], settings)[0])
        except BaseException:
            if charged:
                self.budget.refund(key)
            raise


# ---- TaP's rendering and judging as a DSPy adapter and metric ---------------------------------------------------
def _fields(signature) -> tuple[list[str], str]:
    inputs, outputs = list(signature.input_fields), list(signature.output_fields)
    if len(outputs) != 1:
        raise TapError(f"TaP optimizes and renders one-output signatures; {signature.__name__} has outputs {outputs}. "
                       "Fix: use a signature with one output field (e.g. dspy.Predict('question -> answer')).")
    return inputs, outputs[0]


def input_text(signature, values: dict) -> str:
    """An example's input as TaP's task sees it: the one input field's value, or ``Name: value`` lines."""
    inputs, _ = _fields(signature)
    if len(inputs) == 1:
        return str(values[inputs[0]])
    return "\n".join(f"{signature.input_fields[n].json_schema_extra['prefix']} {values[n]}" for n in inputs)


def answer_format(signature) -> AnswerFormat:
    """The chain's answer format kept on the output field (its ``prefix``, when it holds ``{answer}``)."""
    _, out = _fields(signature)
    prefix = signature.output_fields[out].json_schema_extra.get("prefix", "")
    return AnswerFormat("", prefix) if "{answer}" in prefix else AnswerFormat()


class TapAdapter(dspy.Adapter):
    """Renders a one-output predictor as TaP renders a chain (system block: the signature's instructions;
    demonstrations as user/assistant turns, answers in the chain's format; then the input) and reads the answer
    after the format's marker. A program compiled by ``TaPOptimizer`` run with this adapter sends the prompts TaP's
    search measured, with the same decoding (``max_tokens`` 24, stop at a blank line, as ``PlanConfig``).
    """

    def __init__(self, max_tokens: int = TAP_MAX_TOKENS, stop: Sequence[str] = TAP_STOP) -> None:
        super().__init__()
        self.max_tokens, self.stop = max_tokens, tuple(stop)

    def __call__(self, lm, lm_kwargs, signature, demos, inputs):
        lm_kwargs = {"max_tokens": self.max_tokens, "stop": list(self.stop), **lm_kwargs}
        return super().__call__(lm, lm_kwargs, signature, demos, inputs)

    async def acall(self, lm, lm_kwargs, signature, demos, inputs):
        lm_kwargs = {"max_tokens": self.max_tokens, "stop": list(self.stop), **lm_kwargs}
        return await super().acall(lm, lm_kwargs, signature, demos, inputs)

    def format(self, signature, demos, inputs) -> list[dict[str, str]]:
        _, out = _fields(signature)
        fmt = answer_format(signature)
        messages = [{"role": "system", "content": signature.instructions}] if signature.instructions.strip() else []
        for demo in demos:
            if out in demo and all(n in demo for n in signature.input_fields):
                messages.append({"role": "user", "content": input_text(signature, demo)})
                messages.append({"role": "assistant", "content": fmt.render(str(demo[out]))})
        messages.append({"role": "user", "content": input_text(signature, inputs)})
        return messages

    def parse(self, signature, completion: str) -> dict[str, Any]:
        _, out = _fields(signature)
        return {out: answer_region(completion, answer_format(signature).marker)[0]}


class TapMetric:
    """A DSPy metric judged as TaP judges an answer (``tap.tasks.answers.judge``): ``surface`` (case, surrounding
    punctuation and spaces ignored; the ``ii:`` tasks) or ``lenient`` (SQuAD-style; numbers by value). Accepted
    answers: the example's ``targets`` (a list) when it has them, else its output field's value. Returns 1.0 or 0.0.
    """

    def __init__(self, match: str = "surface") -> None:
        if match not in ("surface", "lenient"):
            raise TapError(f"unknown answer match {match!r}; use 'surface' or 'lenient' (tap.tasks.answers).")
        self.match = match

    def __call__(self, example, prediction, trace=None, *args: Any, **kwargs: Any) -> float:
        labels = [k for k in example.labels().keys() if k != "targets"]
        out = next((k for k in labels if prediction is not None and k in prediction), None)
        if out is None:
            return 0.0  # no answer field: the program failed to answer
        reply = "" if prediction[out] is None else str(prediction[out])
        targets = example.get("targets") or [example[out]]
        return float(judge(reply, [str(t) for t in targets], [], set(), "", self.match).correct)


# ---- TaP's search as a DSPy optimizer ----------------------------------------------------------------------------
def _run_search(llm: CachedLLM, task: Task, initial: Chain, budget_calls: int, seed: int, preset: str,
                checkpoint: str | Path | None):
    """TaP's search on ``task`` from ``initial``: the one place this module meets TaP's search API. A ranked
    preset without ``checkpoint`` uses the world model that ships for ``llm``'s model.
    """
    from tap.planning import PlanConfig, Planner

    config = PlanConfig(preset=preset, test_examples=0, eval_examples=min(16, len(task.val)))
    if preset == "random":
        planner = Planner(None, config=config, llm=llm)
    else:
        planner = Planner.from_checkpoint(checkpoint, llm=llm, config=config, model=_model_of(llm))
    return planner.optimize(task, seed=seed, initial=initial, progress=False, budget_calls=budget_calls)


def _model_of(llm) -> str:
    """The frozen model a TaP LLM runs (its cache name without the dtype: an offline model's slug)."""
    return str(getattr(llm, "name", "")).split("@")[0]


def _world_model_for(model: str, checkpoint: str | Path | None) -> str | Path | None:
    """The world model a ranked preset would use for ``model``: ``checkpoint`` if it exists, else the shipped one
    (None: neither).
    """
    if checkpoint is not None:
        return checkpoint if Path(checkpoint).exists() else None
    from tap.systems.checkpoints import shipped_world_model

    try:
        return shipped_world_model(model)
    except TapError:
        return None


@dataclass
class _GivenSplits(Task):
    """A task whose train and val splits are the DSPy trainset and valset as given (no test split)."""

    n_train: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.splits = {"train": self.examples[: self.n_train], "val": self.examples[self.n_train :], "test": []}
        self.split_of = {ex.uid: s for s, exs in self.splits.items() for ex in exs}


class TaPOptimizer:
    """TaP's successive-halving search over a one-predictor DSPy program's chain (instruction, demonstrations,
    answer format), as a DSPy optimizer: ``compile(program, trainset=..., valset=...)`` returns a copy with the
    found instruction (TaP's system block: instruction, steps, format sentence), demonstrations and answer format
    (the output field's prefix) set on its predictor, and the search's ``SearchResult`` as ``.tap_result``.

    Args:
        metric: how answers are judged during the search: a ``TapMetric`` or its match (``"surface"``,
            ``"lenient"``). TaP's search judges replies itself, so an arbitrary callable cannot steer it.
        budget_calls: most LLM calls (example evaluations, as TaP's planner counts them) the search may spend.
        seed: seeds the search (same seed, same data: same program).
        preset: ``"auto"`` (default): TaP's ``default`` preset when a world model is at hand for the LM's model
            (``checkpoint``, or the one that ships for it: SmolLM2), else ``random`` (random-sh: the same search
            with a uniform ranker, which needs no world model); or any preset of ``tap.planning.PRESETS``.
        checkpoint: the world-model checkpoint of the ranked presets (default: the one that ships for the LM's
            model).
        lm: the ``TapLM`` whose model and cache the search uses (default: ``dspy.settings.lm``).
    """

    def __init__(self, metric: TapMetric | str = "surface", budget_calls: int = 256, seed: int = 0,
                 preset: str = "auto", checkpoint: str | Path | None = None, lm: TapLM | None = None) -> None:
        self.metric = metric if isinstance(metric, TapMetric) else TapMetric(metric) if isinstance(metric, str) \
            else None
        if self.metric is None:
            raise TapError(f"TaPOptimizer judges answers with TaP's own rules; got metric {metric!r}. Fix: pass "
                           "metric=TapMetric('surface') or TapMetric('lenient') (or the string).")
        if isinstance(budget_calls, bool) or not isinstance(budget_calls, int) or budget_calls < 1:
            raise TapError(f"budget_calls must be a positive number of LLM calls, got {budget_calls!r}.")
        from tap.planning import PRESETS

        if preset != "auto" and preset not in PRESETS:
            raise TapError(f"unknown preset {preset!r}; choose 'auto' or one of {list(PRESETS)}.")
        if checkpoint is not None and not Path(checkpoint).exists():
            raise TapError(f"the world-model checkpoint {checkpoint!r} does not exist. Fix: train one (README), pass "
                           "another, or leave it out (the shipped one, or preset='random').")
        self.preset, self.checkpoint = preset, checkpoint
        self.budget_calls, self.seed, self.lm = budget_calls, seed, lm

    def resolved_preset(self, lm: TapLM | None = None) -> str:
        """The preset a compile runs: ``auto`` is ``default`` where a world model is at hand for ``lm``'s model (the
        given checkpoint or the shipped one), else ``random``; a ranked preset with none is refused.
        """
        lm = lm or self.lm or dspy.settings.lm
        model = _model_of(lm.llm) if isinstance(lm, TapLM) else ""
        have = _world_model_for(model, self.checkpoint) is not None
        if self.preset == "auto":
            return "default" if have else "random"
        if self.preset != "random" and not have:
            raise TapError(f"preset {self.preset!r} ranks edits with a world model, and none ships for {model!r}. "
                           "Fix: pass checkpoint=... (train one: README), or use preset='random'.")
        return self.preset

    def compile(self, student, *, trainset: Sequence, valset: Sequence | None = None, **_: Any):
        """Search ``student``'s chain on ``valset`` with demonstrations from ``trainset`` (no valset: a seeded
        third of the trainset is held out for the search) and return the optimized copy.
        """
        predictors = student.named_predictors()
        if len(predictors) != 1:
            raise TapError(f"TaPOptimizer optimizes programs with one predictor; this one has {len(predictors)} "
                           f"({[n for n, _ in predictors]}). Fix: optimize each predictor as its own program.")
        (_, predictor), signature = predictors[0], predictors[0][1].signature
        _, out = _fields(signature)
        trainset, valset = list(trainset), list(valset or [])
        if not trainset:
            raise TapError("compile() got an empty trainset: give labelled examples (demonstrations come from it).")
        if not valset:
            if len(trainset) < 3:
                raise TapError(f"compile() got {len(trainset)} train examples and no valset: give a valset, or at "
                               "least 3 train examples (a third is held out for the search).")
            import random

            order = list(range(len(trainset)))
            random.Random(f"tap-dspy-val:{self.seed}").shuffle(order)
            cut = len(order) // 3
            valset, trainset = [trainset[i] for i in order[:cut]], [trainset[i] for i in order[cut:]]
        lm = self.lm or dspy.settings.lm
        if not isinstance(lm, TapLM):
            raise TapError(f"TaPOptimizer searches with a TapLM's model and cache; the configured LM is {lm!r}. Fix: "
                           "dspy.configure(lm=TapLM(...)) or TaPOptimizer(lm=TapLM(...)).")
        given = list(predictor.demos)
        rows = [*trainset, *[d for d in given if not any(_same(d, t) for t in trainset)], *valset]
        examples = [Example(uid, input_text(signature, ex), tuple(str(t) for t in (ex.get("targets") or [ex[out]])))
                    for uid, ex in enumerate(rows)]
        n_train = len(rows) - len(valset)
        task = _GivenSplits(f"dspy:{signature.__name__}", examples, "exact_match", seed=self.seed,
                            match=self.metric.match, n_train=n_train)  # type: ignore[call-arg]
        demos = tuple(Demo(uid, examples[uid].input, str(rows[uid][out]))
                      for d in given for uid in range(n_train) if _same(d, rows[uid]))
        instructions = signature.instructions.strip()
        default = f"Given the fields {', '.join(f'`{n}`' for n in signature.input_fields)}, produce the fields `{out}`."
        initial = Chain(instruction=GENERIC_INSTRUCTION if instructions in ("", default) else instructions,
                        answer_format=answer_format(signature), demos=demos)
        preset = self.resolved_preset(lm)
        result = lm.run(lambda llm: _run_search(llm, task, initial, self.budget_calls, self.seed, preset,
                                                self.checkpoint))
        return to_program(student, result.final_chain, rows, result)


def _same(a, b) -> bool:
    return dict(a.items()) == dict(b.items()) if hasattr(a, "items") and hasattr(b, "items") else a == b


def to_program(student, chain: Chain, rows: Sequence, result=None):
    """A copy of the one-predictor ``student`` that holds ``chain``: its system text as the instructions, its
    demonstrations (``rows[demo.uid]``) as the predictor's demos, its answer template as the output field's prefix.
    """
    program = student.deepcopy()
    (_, predictor), = program.named_predictors()
    _, out = _fields(predictor.signature)
    signature = predictor.signature.with_instructions(system_text(chain))
    if chain.answer_format.template != "{answer}":
        signature = signature.with_updated_fields(out, prefix=chain.answer_format.template)
    predictor.signature = signature
    predictor.demos = [rows[d.uid] if d.output == str(rows[d.uid][out]) else rows[d.uid].copy(**{out: d.output})
                       for d in chain.demos]
    program.tap_result = result
    program._compiled = True
    return program


def chain_of(program) -> Chain:
    """The TaP chain a one-predictor program holds (instructions, demos, answer format), as ``TapAdapter`` renders
    it. Demonstration uids are their positions in the predictor's demos.
    """
    (_, predictor), = program.named_predictors()
    signature = predictor.signature
    _, out = _fields(signature)
    fmt = answer_format(signature)
    demos = tuple(Demo(i, input_text(signature, d), str(d[out])) for i, d in enumerate(predictor.demos))
    return replace(Chain(), instruction=signature.instructions, answer_format=fmt, demos=demos)


__all__ = ["CallBudget", "CallBudgetExceeded", "TaPOptimizer", "TapAdapter", "TapLM", "TapMetric", "chain_of",
           "input_text", "to_program"]
