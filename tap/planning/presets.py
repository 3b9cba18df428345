"""The search's presets: four named settings of ``SuccessiveHalvingSearch``, and how to override one.

- ``default``: ranked by the operation prior the world model learnt on its training tasks, hedged against
  random draws, composing plans of its best edits, accepting an obvious gain early, starting lazily, and
  learning online which operations help on this task (with optimism about the ones not measured yet). What
  ``plan.py``, the Python API and the quickstart run.
- ``model``: the same search ranked by the world model's own predictions and their uncertainty.
- ``random``: ``random-sh``, the same halving, race and lazy start with a uniform choice: the ablation that
  isolates what the ranker adds (needs no world model).
- ``readable``: ``default`` with the frozen LLM's fluency weighed in, so token edits keep the chain readable
  (same accuracy, +1.86 ± 1.13 nats per token over 20 paired runs; about one real evaluation of compute a round).

Every other value is ``SEARCH_DEFAULTS``. A run records its preset and every resolved setting
(``SearchResult.config``). Settings are overridden by name (``plan.py --set hedge=false``); an unknown name is
refused with the known ones listed. What the settings do: ``tap.planning.halving``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tap.errors import TapError
from tap.planning.halving import check_settings

#: every setting of the search and its value when no preset sets it
SEARCH_DEFAULTS: dict[str, object] = {
    "ranker": "prior", "menu": 256, "plans": 0.25, "enter": 8, "beta": 1.0, "explore": 0.125,
    "dense_weight": 0.25, "adapt": 0.0, "op_bonus": False, "hedge": False, "compose": 0, "compose_hedge": False,
    "early_accept": 0.0, "lazy_initial": False, "fluency_weight": 0.0, "task_pairs": 4, "max_rounds": 1000,
}
_DEFAULT = {"ranker": "prior", "adapt": 0.1, "op_bonus": True, "hedge": True, "compose": 4, "compose_hedge": True,
            "early_accept": 0.05, "lazy_initial": True}
PRESETS: dict[str, dict[str, object]] = {
    "default": _DEFAULT,
    "model": {**_DEFAULT, "ranker": "model", "op_bonus": False},  # the model has an uncertainty of its own
    "random": {"ranker": "random", "early_accept": 0.05, "lazy_initial": True},
    "readable": {**_DEFAULT, "fluency_weight": 0.1},
}
#: the name each preset's runs carry in results and reports
METHOD_NAMES = {"default": "tap", "model": "tap-model", "random": "random-sh", "readable": "tap-readable"}


def parse_overrides(items: Iterable[str] | Mapping[str, object] | None) -> dict[str, object]:
    """``["hedge=false", "enter=4"]`` (or a mapping) -> typed overrides; unknown names and bad values are refused."""
    if not items:
        return {}
    if isinstance(items, Mapping):
        pairs = list(items.items())
    else:
        pairs = []
        for item in items:
            key, sep, value = str(item).partition("=")
            if not sep or not key.strip():
                raise TapError(f"a setting is key=value, got {item!r} (e.g. --set hedge=false enter=4).")
            pairs.append((key.strip(), value.strip()))
    out = {}
    for key, value in pairs:
        if key not in SEARCH_DEFAULTS:
            raise TapError(f"unknown search setting {key!r}; known: {', '.join(sorted(SEARCH_DEFAULTS))}.")
        out[key] = _typed(key, value)
    return out


def _typed(key: str, value: object) -> object:
    """``value`` as the type of ``SEARCH_DEFAULTS[key]`` (strings from the command line are parsed)."""
    kind = type(SEARCH_DEFAULTS[key])
    if not isinstance(value, str):
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return value
        raise TapError(f"setting {key!r} takes a {kind.__name__}, got {value!r}.")
    try:
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes", "on")
        return kind(value)
    except ValueError:
        raise TapError(f"setting {key!r} takes a {kind.__name__}, got {value!r}.") from None


def resolve(preset: str = "default", overrides: Iterable[str] | Mapping[str, object] | None = None) -> dict:
    """Every setting of the search for ``preset`` with ``overrides`` on top, checked (``check_settings``)."""
    if preset not in PRESETS:
        raise TapError(f"unknown preset {preset!r}; choose one of {list(PRESETS)} (settings: --set key=value).")
    settings = {**SEARCH_DEFAULTS, **PRESETS[preset], **parse_overrides(overrides)}
    check_settings(**{k: settings[k] for k in ("ranker", "menu", "plans", "enter", "beta", "explore", "adapt",
                                               "op_bonus", "hedge", "compose", "compose_hedge", "early_accept",
                                               "fluency_weight")})
    return settings


__all__ = ["METHOD_NAMES", "PRESETS", "SEARCH_DEFAULTS", "parse_overrides", "resolve"]
