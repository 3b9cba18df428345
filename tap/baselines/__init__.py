"""Baseline chain searches on the project's environment and call accounting, one readable module per
published method, for the head-to-head benchmark (``benchmarks/compare.py``):

- ``random``: random edit search in TaP's own edit space (stochastic hill climbing);
- ``grips``: GrIPS-style greedy phrase edits of the instruction with patience;
- ``ape``: APE-style instruction induction from demonstrations with successive halving;
- ``opro``: OPRO-style meta-prompt of scored instructions;
- ``evoprompt``: EvoPrompt-style genetic algorithm with LLM crossover and mutation;
- ``demos``: demonstrations only (random search over few-shot sets).

``run_baseline(name, llm, task, budget, seed)`` runs one and returns a ``SearchResult``.
"""

from __future__ import annotations

from tap.baselines.ape import ApeSearch
from tap.baselines.demos import DemosOnlySearch
from tap.baselines.evoprompt import EvoPromptSearch
from tap.baselines.grips import GripsSearch
from tap.baselines.opro import OproSearch
from tap.baselines.random_search import RandomEditSearch
from tap.chains.induce import clean_instruction
from tap.errors import TapError
from tap.search import Search, SearchRecord, SearchResult

BASELINES: dict[str, type[Search]] = {cls.name: cls for cls in (RandomEditSearch, GripsSearch, ApeSearch, OproSearch,
                                                                 EvoPromptSearch, DemosOnlySearch)}
#: baselines whose proposals come from an LLM (the proposer)
USES_PROPOSER = ("ape", "opro", "evoprompt")


def run_baseline(name: str, llm, task, budget: int | None, seed: int = 0, **settings) -> SearchResult:
    """Run baseline ``name`` on ``task`` with ``budget`` chain evaluations (and/or ``budget_calls=`` LLM calls
    in ``settings``). ``settings`` go to its
    constructor (e.g. ``eval_examples``, ``proposer``, ``patience``).
    """
    if name not in BASELINES:
        raise TapError(f"unknown baseline {name!r}; choose one of {sorted(BASELINES)}.")
    try:
        search = BASELINES[name](llm, task, budget, seed, **settings)
    except TypeError as err:
        raise TapError(f"bad setting for baseline {name!r}: {err}") from err
    return search.run()


__all__ = ["BASELINES", "USES_PROPOSER", "ApeSearch", "DemosOnlySearch", "EvoPromptSearch", "GripsSearch",
           "OproSearch", "RandomEditSearch", "Search", "SearchRecord", "SearchResult", "clean_instruction",
           "run_baseline"]
