"""Frozen-LLM backends behind one interface, and the persistent call cache."""

from __future__ import annotations

import os
from pathlib import Path

from tap.errors import BackendError
from tap.llm.base import LLM, GenerationSettings, Score
from tap.llm.cache import CallCache
from tap.llm.cached import CachedLLM
from tap.paths import cache_dir


def load_llm(model: str = "smollm2", cache: str | Path | None = "default", **kwargs) -> CachedLLM:
    """The frozen LLM ``model`` behind the on-disk call cache (``"default"``: ``<cache_dir>/calls.sqlite``;
    None: in memory). ``openai:<model>@<base url>`` uses an OpenAI-compatible server
    (``OpenAICompatibleLLM``; ``$TAP_SERVER_TIMEOUT`` and ``$TAP_SERVER_RETRIES`` set its per-request timeout and
    retries where the caller does not, e.g. from the command line). Extra keyword arguments go to the backend.
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
        for key, var, kind in (("timeout", "TAP_SERVER_TIMEOUT", float), ("retries", "TAP_SERVER_RETRIES", int)):
            if key not in server_kwargs and os.environ.get(var):
                try:
                    server_kwargs[key] = kind(os.environ[var])
                except ValueError:
                    raise BackendError(f"${var} must be a{'n integer' if kind is int else ' number'}, got "
                                       f"{os.environ[var]!r}.") from None
        backend = OpenAICompatibleLLM(url, name, **server_kwargs)
        # a server answers max_concurrency requests at a time: saving each such chunk as it completes bounds what a
        # killed client loses to the requests in flight (a chunk of 64 would risk 64 answered calls)
        return CachedLLM(backend, CallCache(path), chunk=max(1, int(getattr(backend, "max_concurrency", 8))))
    from tap.llm.hf import TransformersLLM

    return CachedLLM(TransformersLLM(model, **kwargs), CallCache(path))


__all__ = ["LLM", "CachedLLM", "CallCache", "GenerationSettings", "Score", "load_llm"]
