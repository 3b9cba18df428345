"""TaP against the prompt optimizers people use (DSPy's, GEPA, promptolution's), at equal TOTAL LLM calls.

Every method runs on the same frozen LLM (``TapLM``: greedy, through TaP's call cache), the same split
(``load_task(spec, seed=s)``: demonstrations from train, search on val, accuracy on the first ``--test`` test
examples) and the same metric (``TapMetric``: TaP's answer judging). A run's calls are every request its optimizer
sends through ``TapLM``: task-model, proposer, reflection and bootstrapping calls alike, under one ``CallBudget``
that refuses call ``budget + 1`` (an optimizer that cannot stop at a budget is sized to land near it; refused
calls are failures it scores 0, so it keeps the best program it measured). TaP's search counts in its own unit,
an example evaluation (a reply plus the gold answer's score): ``calls`` is that, ``requests`` the model requests.
Budget 0 is each family's starting program: DSPy's LabeledFewShot (k = 4), the bare DSPy program, and TaP's
initial chain with 4 random labelled demonstrations. See docs/dspy.md.

    python benchmarks/peers.py --tasks ii:first_word_letter --budgets 0 128 256 --seeds 0-4 --out <folder>

Resumable: each run's JSON is written atomically to ``<out>/runs/`` and skipped when present; the call cache makes a
rerun of an interrupted run free. ``<out>/peers.md`` (table, mean ± 95 % CI over seeds) and ``<out>/peers.png``
(test accuracy against calls) are rebuilt from every saved run at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import dspy  # noqa: E402
from stats import fmt  # noqa: E402 - benchmarks/ is on the path from here on

from tap.chains.chain import Chain, Demo  # noqa: E402
from tap.chains.library import GENERIC_INSTRUCTION  # noqa: E402
from tap.integrations.dspy import (  # noqa: E402
    CallBudget,
    CallBudgetExceeded,
    TapAdapter,
    TapLM,
    TapMetric,
    TaPOptimizer,
    to_program,
)
from tap.llm.base import GenerationSettings  # noqa: E402
from tap.tasks import Task, load_task, task_slug  # noqa: E402

SIGNATURE = "input -> answer"
DEMOS = 4  # k of the 0-call rows (LabeledFewShot, TaP's initial chain)
THREADS = 1  # one request at a time: deterministic replies, and the CPU's cores go to the model


def examples(rows) -> list:
    """TaP examples as DSPy examples (input -> answer, every accepted answer kept as ``targets``)."""
    return [dspy.Example(input=ex.input, answer=ex.answer, targets=list(ex.targets)).with_inputs("input")
            for ex in rows]


class Run:
    """One (task, method, budget, seed): the data, the budgeted LMs and the metric a method gets."""

    def __init__(self, task: Task, budget: int, seed: int, llm, val: int, proposer=None) -> None:
        self.task, self.budget, self.seed = task, budget, seed
        self.train, self.val = examples(task.train), examples(task.val[:val])
        self.calls = CallBudget(budget)
        self.lm = TapLM(llm, budget=self.calls)  # task model
        # proposals, reflections and promptolution's meta prompts: the frozen LLM, or a stronger one (--proposer)
        self.proposer = TapLM(proposer if proposer is not None else llm, budget=self.calls, max_tokens=256, stop=())
        self.metric = TapMetric(task.match)
        self.sized: dict = {}  # the optimizer settings sized to the budget


# ---- the methods: each returns (program, adapter) ---------------------------------------------------------------
def labeled(run: Run):
    return dspy.LabeledFewShot(k=DEMOS).compile(dspy.Predict(SIGNATURE), trainset=run.train), dspy.ChatAdapter()


def bfsrs(run: Run):
    if run.budget == 0:
        return dspy.Predict(SIGNATURE), dspy.ChatAdapter()
    v = len(run.val)
    # seeds -3 (zero-shot), -2 (labeled), -1 (bootstrapped) and n random bootstraps, each scored on the valset,
    # each bootstrap about 8 teacher calls
    n = max(0, run.budget // (v + 8) - 3)
    run.sized = {"num_candidate_programs": n, "max_bootstrapped_demos": DEMOS, "max_labeled_demos": DEMOS}
    opt = dspy.BootstrapFewShotWithRandomSearch(run.metric, num_threads=THREADS, max_errors=10**9, **run.sized)
    return opt.compile(dspy.Predict(SIGNATURE), trainset=run.train, valset=run.val), dspy.ChatAdapter()


def _mipro(run: Run, light: bool):
    if run.budget == 0:
        return dspy.Predict(SIGNATURE), dspy.ChatAdapter()
    v = len(run.val)
    if light:
        run.sized = {"auto": "light"}
        kwargs: dict = {}
    else:  # 3 instructions, 3 demo sets (~8 calls each), ~12 proposer calls, then full-valset trials
        trials = max(1, (run.budget - 3 * 8 - 12) // v)
        run.sized = {"auto": None, "num_candidates": 3}
        kwargs = {"num_trials": trials, "minibatch": False}
        run.sized.update(kwargs)
    opt = dspy.MIPROv2(run.metric, prompt_model=run.proposer, task_model=run.lm, num_threads=THREADS,
                       max_errors=10**9, seed=run.seed, max_bootstrapped_demos=DEMOS, max_labeled_demos=DEMOS,
                       **{k: v for k, v in run.sized.items() if k in ("auto", "num_candidates")})
    return opt.compile(dspy.Predict(SIGNATURE), trainset=run.train, valset=run.val, **kwargs), dspy.ChatAdapter()


def gepa(run: Run):
    if run.budget == 0:
        return dspy.Predict(SIGNATURE), dspy.ChatAdapter()
    # one reflection call per iteration of 2 x 3 minibatch evaluations: ~6/7 of the calls are metric calls
    run.sized = {"max_metric_calls": max(len(run.val) + 1, run.budget * 6 // 7)}
    opt = dspy.GEPA(run.metric, reflection_lm=run.proposer, num_threads=THREADS, seed=run.seed, **run.sized)
    return opt.compile(dspy.Predict(SIGNATURE), trainset=run.train, valset=run.val), dspy.ChatAdapter()


def _tap(preset: str) -> Callable[[Run], tuple]:
    def compile_(run: Run):
        if run.budget == 0:  # TaP's initial chain with k random labelled demonstrations
            rng = random.Random(f"peers-demos:{run.seed}")
            picks = rng.sample(range(len(run.train)), DEMOS)
            chain = Chain(GENERIC_INSTRUCTION, demos=tuple(Demo(i, run.train[i].input, run.train[i].answer)
                                                           for i in picks))
            return to_program(dspy.Predict(SIGNATURE), chain, run.train), TapAdapter()
        opt = TaPOptimizer(run.metric, budget_calls=run.budget, seed=run.seed, preset=preset, lm=run.lm)
        run.sized = {"preset": opt.resolved_preset()}
        program = opt.compile(dspy.Predict(SIGNATURE), trainset=run.train, valset=examples(run.task.val))
        return program, TapAdapter()

    return compile_


# ---- promptolution: its own prompt format (instruction, few-shots, <final_answer> tags) and its own loop ----------
class PromptolutionProgram:
    """A promptolution prompt run by promptolution's ``MarkerBasedPredictor`` on the LM DSPy is configured with (the
    run's ``TapLM`` while optimizing, the unbudgeted scorer at test time), called like a DSPy program.
    """

    def __init__(self, prompt=None, max_tokens: int = 64) -> None:
        from promptolution.llms.base_llm import BaseLLM
        from promptolution.predictors import MarkerBasedPredictor

        settings = GenerationSettings(max_tokens, ())

        class Current(BaseLLM):
            def _get_response(self, prompts, system_prompts):
                return [dspy.settings.lm.generate_messages([{"role": "system", "content": s},
                                                            {"role": "user", "content": p}], settings)
                        for p, s in zip(prompts, system_prompts)]

        self.prompt, self.predictor = prompt, MarkerBasedPredictor(Current())

    def __call__(self, input: str) -> dspy.Prediction:
        (pred,), _ = self.predictor.predict([self.prompt.construct_prompt()], [input])
        return dspy.Prediction(answer=pred)

    def messages(self) -> list[dict]:
        from promptolution.utils.templates import DEFAULT_SYS_PROMPT

        return [{"role": "system", "content": DEFAULT_SYS_PROMPT},
                {"role": "user", "content": self.prompt.construct_prompt() + "\n{input}"}]


def _promptolution(name: str) -> Callable[[Run], tuple]:
    def compile_(run: Run):
        import numpy as np
        import pandas as pd
        from promptolution.llms.base_llm import BaseLLM
        from promptolution.optimizers import CAPO, EvoPromptGA
        from promptolution.tasks import ClassificationTask
        from promptolution.utils.prompt import Prompt

        from tap.chains.library import INSTRUCTIONS
        from tap.tasks.answers import judge

        population = [GENERIC_INSTRUCTION, *INSTRUCTIONS[:3]]
        program = PromptolutionProgram(Prompt(population[0]))
        if run.budget == 0:
            return program, None

        class Meta(BaseLLM):
            def _get_response(self, prompts, system_prompts):
                return [run.proposer.generate_messages([{"role": "system", "content": s},
                                                        {"role": "user", "content": p}], GenerationSettings(256, ()))
                        for p, s in zip(prompts, system_prompts)]

        def metric(ys, preds) -> float:  # every accepted answer travels in y, joined by \x1f
            return float(judge(str(preds[0]), str(ys[0]).split("\x1f"), [], set(), "", run.task.match).correct)

        def frame(rows) -> pd.DataFrame:
            return pd.DataFrame({"x": [r.input for r in rows], "y": ["\x1f".join(r.targets) for r in rows]})

        np.random.seed(run.seed)  # both draw from numpy's and random's global generators
        random.seed(run.seed)
        v = len(run.val)
        if name == "capo":
            task = ClassificationTask(frame(run.val), GENERIC_INSTRUCTION, "x", "y", n_subsamples=max(1, v // 2),
                                      eval_strategy="sequential_block", seed=run.seed, metric=metric)
            opt = CAPO(program.predictor, task, Meta(), initial_prompts=population,
                       df_few_shots=frame(run.train[:50]), max_n_blocks_eval=2)
            run.sized = {"initial_prompts": len(population), "block": max(1, v // 2), "max_n_blocks_eval": 2}
        else:
            task = ClassificationTask(frame(run.val), GENERIC_INSTRUCTION, "x", "y", n_subsamples=v,
                                      eval_strategy="full", seed=run.seed, metric=metric)
            opt = EvoPromptGA(program.predictor, task, Meta(), initial_prompts=population, selection_mode="wheel")
            run.sized = {"initial_prompts": len(population), "selection_mode": "wheel"}
        logging.getLogger("promptolution").setLevel(logging.CRITICAL)  # it logs the budget's stop as an error
        try:  # its loop ends at the budget (it stops on the refusal); a refusal before it starts keeps the start.
            # A step that pays anything pays a call, so `budget` steps bound it when proposals repeat (repeats are free)
            prompts = opt.optimize(n_steps=run.budget)
        except CallBudgetExceeded:
            prompts = opt.prompts
        program.prompt = prompts[0] if prompts and isinstance(prompts[0], Prompt) else program.prompt
        return program, None

    return compile_


#: method name -> how it optimizes (``tap``: TaP's default preset with the shipped world model, else random-sh)
METHODS: dict[str, Callable[[Run], tuple]] = {
    "labeled": labeled, "bfsrs": bfsrs, "mipro-light": lambda r: _mipro(r, True), "mipro": lambda r: _mipro(r, False),
    "gepa": gepa, "capo": _promptolution("capo"), "evoprompt": _promptolution("evoprompt"), "tap": _tap("auto"),
    "tap-random-sh": _tap("random"),
}
ZERO_CALL_ONLY = ("labeled",)  # budget-free methods: one row, at budget 0


def final_prompt(program, adapter) -> list[dict]:
    """What the run's program sends for an input (``{input}`` stands for it)."""
    if isinstance(program, PromptolutionProgram):
        return program.messages()
    (_, predictor), = program.named_predictors()
    return adapter.format(predictor.signature, predictor.demos, {"input": "{input}"})


def run_one(spec: str, method: str, budget: int, seed: int, llm, test: int, val: int, proposer=None) -> dict:
    """Optimize, then score the program on the first ``test`` test examples (never charged)."""
    task = load_task(spec, seed=seed)
    run = Run(task, budget, seed, llm, val, proposer)
    scorer = TapLM(llm)  # unbudgeted: the test never counts
    t0 = time.time()
    try:
        with dspy.context(lm=run.lm):
            program, adapter = METHODS[method](run)
        seconds = time.time() - t0
        with dspy.context(lm=scorer, adapter=adapter or dspy.ChatAdapter()):
            ev = dspy.Evaluate(devset=examples(task.test[:test]), metric=run.metric, num_threads=THREADS,
                               display_progress=False, max_errors=10**9)
            accuracy = ev(program).score / 100
        paid = run.lm.paid + run.proposer.paid
    finally:
        for lm in (run.lm, run.proposer, scorer):
            lm.close()
    result = getattr(program, "tap_result", None)
    calls = result.costs["search"]["example_evals"] if result is not None else run.calls.calls
    requests = result.costs["search"]["llm_requests"] if result is not None else run.calls.calls
    return {"task": spec, "method": method, "budget": budget, "seed": seed, "calls": calls, "requests": requests,
            "paid": paid, "test": {"accuracy": accuracy, "n": min(test, len(task.test))}, "sized": run.sized,
            "seconds": round(seconds, 1), "model": run.lm.llm.name, "proposer": run.proposer.llm.name,
            "prompt": final_prompt(program, adapter),
            "search": {} if result is None else {"initial": result.initial_search, "final": result.final_search,
                                                 "edits": result.edits, "costs": result.costs["search"]},
            "dspy": dspy.__version__}


def run_path(out: Path, spec: str, method: str, budget: int, seed: int) -> Path:
    return out / "runs" / task_slug(spec) / method / f"b{budget}_s{seed}.json"


def write_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False))
    os.replace(tmp, path)


def report(out: Path) -> str:
    """The table (task x method x budget: test accuracy and calls, mean ± 95 % CI over seeds) and the plot."""
    rows = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*/*/*.json"))]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["task"], r["method"], r["budget"])].append(r)
    lines = ["| task | method | budget | seeds | test accuracy | calls used | model requests |", "|---" * 7 + "|"]
    for (task, method, budget), rs in sorted(groups.items()):
        acc = [r["test"]["accuracy"] for r in rs]
        lines.append(f"| {task} | {method} | {budget} | {len(rs)} | {fmt(acc)} | {fmt([r['calls'] for r in rs], 0)} "
                     f"| {fmt([r['requests'] for r in rs], 0)} |")
    text = "\n".join(lines) + "\n"
    (out / "peers.md").write_text(text)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        return text
    tasks = sorted({k[0] for k in groups})
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for method in sorted({k[1] for k in groups if k[0] == task}):
            pts = sorted((sum(r["calls"] for r in rs) / len(rs), sum(r["test"]["accuracy"] for r in rs) / len(rs))
                         for (t, m, _), rs in groups.items() if t == task and m == method)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)
        ax.set(title=task, xlabel="LLM calls spent optimizing (total)", ylabel="test accuracy")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "peers.png", dpi=120)
    plt.close(fig)
    return text


def seeds_of(text: str) -> list[int]:
    """``0-4`` or ``0,2,3`` -> seeds."""
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def main(argv: list[str] | None = None, llm=None, proposer=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=["ii:first_word_letter"])
    p.add_argument("--budgets", nargs="+", type=int, default=[0, 128, 256])
    p.add_argument("--seeds", default="0")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--model", default="smollm2", help="the frozen LLM (tap.llm.load_llm spec)")
    p.add_argument("--proposer", default=None,
                   help="proposer, reflection and meta LLM (default: the frozen LLM); runs go to <method>+<proposer>")
    p.add_argument("--test", type=int, default=100, help="test examples each program is scored on")
    p.add_argument("--val", type=int, default=16, help="validation examples the DSPy optimizers score on")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/peers"))
    args = p.parse_args(argv)
    logging.getLogger("dspy").setLevel(logging.ERROR)
    for spec in args.tasks:
        load_task(spec)  # fail before any call
    llm = llm if llm is not None else TapLM(args.model).llm  # one loaded model for every run
    if args.proposer and proposer is None:
        proposer = TapLM(args.proposer).llm
    for spec in args.tasks:
        for seed in seeds_of(args.seeds):
            for budget in args.budgets:
                for method in args.methods:
                    if method in ZERO_CALL_ONLY and budget != 0:
                        continue
                    name = f"{method}+{task_slug(args.proposer)}" if proposer is not None else method
                    path = run_path(args.out, spec, name, budget, seed)
                    if path.exists():
                        continue
                    row = {**run_one(spec, method, budget, seed, llm, args.test, args.val, proposer), "method": name}
                    write_atomic(path, row)
                    print(f"{spec} {name} budget {budget} seed {seed}: test {row['test']['accuracy']:.3f}, "
                          f"{row['calls']} calls ({row['paid']} paid), {row['seconds']} s", flush=True)
    print(report(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
