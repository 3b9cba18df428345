"""What the baselines share beyond ``tap.search`` (where the search base, its record and its result live):
demonstration edits and a guard for chains an edit may empty.
"""

from __future__ import annotations

from collections.abc import Sequence

from tap.chains.chain import Chain, Demo
from tap.chains.edits import Edit
from tap.errors import ChainError, TapError
from tap.search import Search, SearchRecord, SearchResult, search_key  # noqa: F401 - where they used to live


def demo_edits(demos: Sequence[Demo]) -> list[Edit]:
    """The edits that add ``demos`` (in order) to a chain without demonstrations."""
    return [Edit("instruction", "add_example", (i,), {"uid": d.uid, "input": d.input, "output": d.output})
            for i, d in enumerate(demos)]


def safe(chain_fn) -> Chain | None:
    """``chain_fn()``, or None when the chain it builds is invalid (e.g. emptied by a deletion)."""
    try:
        return chain_fn().validate()
    except (ChainError, TapError):
        return None
