"""Reference row: the maintained ``promptolution`` library's EvoPrompt-GA optimiser on TaP's environment.

``promptolution`` (PyPI, 2.3.0) implements EvoPrompt (GA and DE), OPRO and CAPO. Its ``EvoPromptGA`` runs
here unchanged (parent selection by roulette wheel, its own meta-prompt template with a worked example and
the task description, its ``<prompt>`` tag extraction, survival of the fittest); only its two ends are
ours, so the row is comparable with the others: its meta-LLM is the proposer LLM (greedy, cached,
counted), and its task evaluates each prompt as the initial chain with that instruction on the same
search examples through ``Search.evaluate`` (same rendering, judging, budget and incumbent).

Optional: ``pip install -e .[reference]`` (promptolution pulls pandas, scipy, scikit-learn, hydra-core).
``python benchmarks/compare.py --methods promptolution-evoprompt ...`` runs it.
"""

from __future__ import annotations

import logging

from tap.baselines.base import Search
from tap.errors import BudgetExhausted, TapError
from tap.llm.base import GenerationSettings


def _import():
    try:
        import numpy as np
        from promptolution.llms.base_llm import BaseLLM
        from promptolution.optimizers import EvoPromptGA
        from promptolution.predictors.base_predictor import BasePredictor
        from promptolution.tasks.base_task import BaseTask, EvalResult
    except ImportError as err:
        raise TapError(f"the promptolution reference row needs the optional package: pip install -e .[reference] "
                       f"({err}).") from err
    return np, BaseLLM, EvoPromptGA, BasePredictor, BaseTask, EvalResult


class PromptolutionEvoPrompt(Search):
    """``promptolution.optimizers.EvoPromptGA`` searching instructions under TaP's budget and accounting.

    Args:
        population: initial prompts (the task's instruction plus library instructions, as ``evoprompt``).
        **kwargs: ``Search`` arguments.
    """

    name = "promptolution-evoprompt"

    def __init__(self, *args, population: int = 6, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.population = population

    def search(self) -> None:
        np, BaseLLM, EvoPromptGA, BasePredictor, BaseTask, EvalResult = _import()
        outer = self
        failures: list[logging.LogRecord] = []

        class Capture(logging.Handler):
            """EvoPromptGA ends its loop on any exception and logs it: keep them to tell the budget stop from a bug."""

            def emit(self, record: logging.LogRecord) -> None:
                failures.append(record)

        log = logging.getLogger("promptolution")
        handler = Capture(logging.ERROR)
        log.addHandler(handler)
        log.propagate, propagate = False, log.propagate

        class MetaLLM(BaseLLM):
            """The proposer LLM: greedy, through the call cache, counted in the search's proposer costs."""

            def _get_response(self, prompts, system_prompts):
                if outer._stall >= outer.max_stall:
                    raise BudgetExhausted("the proposer made no new chain for too long.")
                outer._stall += len(prompts)
                llm = outer.proposer
                calls0, hits0 = getattr(llm, "calls", 0), getattr(llm, "hits", 0)
                chats = [llm.format_chat([{"role": "system", "content": s}, {"role": "user", "content": p}])
                         for p, s in zip(prompts, system_prompts)]
                replies = llm.generate(chats, GenerationSettings(max_new_tokens=outer.proposer_tokens, stop=()))
                outer.proposals["requests"] += len(prompts)
                outer.proposals["llm_calls"] += getattr(llm, "calls", 0) - calls0
                outer.proposals["cache_hits"] += getattr(llm, "hits", 0) - hits0
                return replies

        class Unused(BasePredictor):
            def _extract_preds(self, preds):  # the task below evaluates through TaP's environment instead
                raise AssertionError("not used")

        class Task(BaseTask):
            """Scores a prompt as the initial chain with that instruction, on the search examples."""

            def _evaluate(self, xs, ys, preds):
                raise AssertionError("not used")

            def evaluate(self, prompts, predictor, system_prompts=None, eval_strategy=None, block_idx=None):
                prompts = [prompts] if not isinstance(prompts, list) else prompts
                scores = []
                for p in prompts:
                    text = p.instruction.strip()
                    if not text:  # an empty extraction: EvoPrompt keeps it with score 0
                        scores.append(np.zeros(len(outer.examples)))
                        continue
                    chain, edits = outer.with_instruction(text)
                    ev = outer.evaluate(chain, edits, note="promptolution evoprompt")
                    scores.append(np.array([float(r.correct) for r in ev.results]))
                s = np.stack(scores)
                zeros = np.zeros_like(s)
                return EvalResult(s, s.mean(axis=1), zeros.astype(str), zeros, zeros, zeros.mean(axis=1),
                                  zeros.mean(axis=1))

        import pandas as pd

        df = pd.DataFrame({"x": [ex.input for ex in self.examples], "y": [ex.answer for ex in self.examples]})
        task = Task(df, "x", "y", task_description=self.task.description, n_subsamples=len(self.examples))
        initial = list(dict.fromkeys([self.start.instruction, *self.space.libraries.instructions]))[: self.population]
        np.random.seed(self.seed)  # EvoPromptGA draws parents from numpy's global generator
        optimizer = EvoPromptGA(Unused(MetaLLM()), task, MetaLLM(), initial_prompts=initial, selection_mode="wheel")
        try:
            optimizer.optimize(n_steps=10_000)  # ends at the budget: its loop stops on the BudgetExhausted we raise
        finally:
            log.removeHandler(handler)
            log.propagate = propagate
        for record in failures:
            err = record.exc_info[1] if record.exc_info else None
            if not isinstance(err, BudgetExhausted):
                raise TapError(f"promptolution's EvoPromptGA stopped on an error: {record.getMessage()}") from err
