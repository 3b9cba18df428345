"""A backend wrapper that answers from the on-disk cache and counts what was paid."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict

from tap.llm.base import LLM, GenerationSettings, Score
from tap.llm.cache import CallCache, call_key


class CachedLLM(LLM):
    """Wraps an ``LLM``: cached calls are free; misses go to the model in chunks of ``chunk`` and are
    written to the cache after each chunk, so a kill loses at most one chunk of work.

    ``calls`` counts real (uncached) LLM calls, ``hits`` calls answered from the cache; one call is
    one prompt generated or one (prompt, continuation) pair scored. A damaged cache entry (failed
    checksum) is paid again, counted in ``repaid`` and reported on stderr.
    """

    def __init__(self, llm: LLM, cache: CallCache, chunk: int = 64) -> None:
        self.llm = llm
        self.cache = cache
        self.chunk = chunk
        self.name = llm.name
        self.has_chat_template = llm.has_chat_template
        self.calls = 0
        self.hits = 0
        self.repaid = 0

    def format_chat(self, messages: list[dict[str, str]]) -> str:
        return self.llm.format_chat(messages)

    def _run(self, keys: list[str], compute, items: list) -> list:
        damaged0 = self.cache.damaged
        found = self.cache.get_many(keys)
        damaged = self.cache.damaged - damaged0
        if damaged:
            self.repaid += damaged
            print(f"[tap] {damaged} damaged cache entries in {self.cache.path} were re-paid "
                  f"({self.repaid} so far in this run)", file=sys.stderr)
        missing = [i for i, k in enumerate(keys) if k not in found]
        fresh = {keys[i] for i in missing}
        self.hits += sum(1 for k in keys if k in found)
        for start in range(0, len(missing), self.chunk):
            idx = missing[start : start + self.chunk]
            # the same call may appear twice in one request: pay it once
            uniq = list(dict.fromkeys(keys[i] for i in idx if keys[i] not in found))
            if not uniq:  # this chunk only repeats calls paid in an earlier chunk
                continue
            first = {keys[i]: i for i in reversed(idx)}
            results = compute([items[first[k]] for k in uniq])
            new = dict(zip(uniq, results))
            self.cache.put_many(new)
            found.update(new)
            self.calls += len(uniq)
        self.hits += len(missing) - len(fresh)
        return [found[k] for k in keys]

    def generate(self, prompts: Sequence[str], settings: GenerationSettings) -> list[str]:
        s = asdict(settings)
        keys = [call_key(self.name, "generate", s, p) for p in prompts]
        return self._run(keys, lambda ps: self.llm.generate(ps, settings), list(prompts))

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[Score]:
        keys = [call_key(self.name, "score", p, c) for p, c in zip(prompts, continuations)]

        def compute(pairs: list[tuple[str, str]]) -> list[list]:
            scores = self.llm.score([p for p, _ in pairs], [c for _, c in pairs])
            return [[s.logprob, s.n_tokens] for s in scores]

        raw = self._run(keys, compute, list(zip(prompts, continuations)))
        return [Score(float(lp), int(n)) for lp, n in raw]
