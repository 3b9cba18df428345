"""Where TaP keeps downloaded artefacts (model weights, BIG-bench sources) and the LLM call cache."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache root: ``$TAP_CACHE`` if set, else ``~/.cache/tap``; created on first use."""
    root = Path(os.environ.get("TAP_CACHE") or Path.home() / ".cache" / "tap").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root
