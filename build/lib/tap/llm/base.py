"""The frozen-LLM interface every backend implements, so callers never depend on one backend."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class GenerationSettings:
    """Greedy decoding settings; part of every generation call's cache key."""

    max_new_tokens: int = 32
    stop: tuple[str, ...] = ("\n\n",)


@dataclass(frozen=True)
class Score:
    """Log-probability of a continuation given a prompt: the sum over its ``n_tokens`` tokens."""

    logprob: float
    n_tokens: int

    @property
    def mean_logprob(self) -> float:
        return self.logprob / max(self.n_tokens, 1)


class LLM(ABC):
    """A frozen language model: batched greedy generation and continuation scoring.

    ``name`` identifies the model *and* its numerics (e.g. dtype) and keys the on-disk call cache,
    so two backends with the same ``name`` must give the same answers.
    """

    name: str
    has_chat_template: bool = False

    @abstractmethod
    def format_chat(self, messages: list[dict[str, str]]) -> str:
        """The model's prompt for chat ``messages``, ending where the assistant's reply begins."""

    @abstractmethod
    def generate(self, prompts: Sequence[str], settings: GenerationSettings) -> list[str]:
        """Greedy completions of ``prompts``, cut at the first stop string or end-of-turn token."""

    @abstractmethod
    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[Score]:
        """Log-probability of each continuation after its prompt (pairs, same length)."""
