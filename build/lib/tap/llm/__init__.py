"""Frozen-LLM backends behind one interface, and the persistent call cache."""

from __future__ import annotations

from pathlib import Path

from tap.errors import BackendError
from tap.llm.base import LLM, GenerationSettings, Score
from tap.llm.cache import CallCache
from tap.llm.cached import CachedLLM
from tap.paths import cache_dir


def load_llm(model: str = "smollm2", cache: str | Path | None = "default", **kwargs) -> CachedLLM:
    """The frozen LLM ``model`` behind the on-disk call cache (``"default"``: ``<cache_dir>/calls.sqlite``;
    None: in memory). ``openai:<model>@<base url>`` uses an OpenAI-compatible server
    (``OpenAICompatibleLLM``). Extra keyword arguments go to the backend.
    """
    path = cache_dir() / "calls.sqlite" if cache == "default" else cache
    if model.startswith("openai:"):  # openai:<model>@<base url>: an OpenAI-compatible server
        from tap.llm.http import OpenAICompatibleLLM

        name, sep, url = model[len("openai:"):].partition("@")
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise BackendError(f"bad server model spec {model!r}; use openai:<model>@<base url>, e.g. "
                               "openai:SmolLM2-135M-Instruct@http://127.0.0.1:8000")
        local_only = ("dtype", "batch_size")  # the local model's settings mean nothing to a server
        server_kwargs = {k: v for k, v in kwargs.items() if k not in local_only}
        return CachedLLM(OpenAICompatibleLLM(url, name, **server_kwargs), CallCache(path))
    from tap.llm.hf import TransformersLLM

    return CachedLLM(TransformersLLM(model, **kwargs), CallCache(path))


__all__ = ["LLM", "CachedLLM", "CallCache", "GenerationSettings", "Score", "load_llm"]
