"""How readable a chain's words are to the frozen LLM: the mean per-token log-probability of its
instruction and steps (the text token edits change), scored as a continuation of a neutral prefix.

Token edits can leave word salad ("1-digit first addition. simple word") that still scores well on a
task; this number shows it next to accuracy (higher is more fluent; compare a chain with the one it
came from). Scoring calls go through the LLM and its cache like any other; searches report them
apart from their budget.
"""

from __future__ import annotations

from collections.abc import Sequence

from tap.chains.chain import Chain
from tap.llm.base import LLM

PREFIX = "Here are instructions for a task:\n"


def chain_text(chain: Chain) -> str:
    """The words a fluency score reads: the instruction and the steps, one per line."""
    return "\n".join(t.strip() for t in (chain.instruction, *chain.steps) if t.strip())


def fluency(llm: LLM, chains: Sequence[Chain]) -> list[float]:
    """Mean per-token log-probability of each chain's ``chain_text`` after ``PREFIX`` (NaN for an empty text)."""
    texts = [chain_text(c) for c in chains]
    todo = [i for i, t in enumerate(texts) if t]
    scores = llm.score([PREFIX] * len(todo), [texts[i] for i in todo]) if todo else []
    out = [float("nan")] * len(texts)
    for i, s in zip(todo, scores):
        out[i] = s.mean_logprob
    return out
