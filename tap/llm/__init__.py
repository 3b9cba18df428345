"""Frozen-LLM backends behind one interface, and the persistent call cache."""

from __future__ import annotations

from pathlib import Path

from tap.llm.base import LLM, GenerationSettings, Score
from tap.llm.cache import CallCache
from tap.llm.cached import CachedLLM
from tap.paths import cache_dir


def load_llm(model: str = "smollm2", cache: str | Path | None = "default", **kwargs) -> CachedLLM:
    """The frozen LLM ``model`` behind the on-disk call cache (``"default"``: ``<cache_dir>/calls.sqlite``;
    None: in memory). Extra keyword arguments go to ``TransformersLLM``.
    """
    from tap.llm.hf import TransformersLLM

    path = cache_dir() / "calls.sqlite" if cache == "default" else cache
    return CachedLLM(TransformersLLM(model, **kwargs), CallCache(path))


__all__ = ["LLM", "CachedLLM", "CallCache", "GenerationSettings", "Score", "load_llm"]
