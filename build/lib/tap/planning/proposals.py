"""Candidate edits: the finite menu a planner chooses from at each step of its search."""

from __future__ import annotations

import random

from tap.chains.chain import Chain
from tap.chains.edits import OPS, SCALES, Edit, EditSpace, apply_edit
from tap.errors import EditError


def propose(space: EditSpace, chain: Chain, k: int, rng: random.Random, tries: int = 30) -> list[Edit]:
    """Up to ``k`` valid edits of ``chain`` that lead to ``k`` distinct chains, taking the three scales
    in turn (instruction, segment, token) so that every scale is on the menu.

    Raises ``EditError`` when the chain admits no edit at all.
    """
    if k < 1:
        raise EditError(f"a planner needs at least one candidate edit per step, got candidates={k}.")
    out: list[Edit] = []
    seen = {chain.to_json()}
    for slot in range(k * 2):  # each slot asks one scale for a fresh edit; a scale with none is skipped
        if len(out) == k:
            break
        scale = SCALES[slot % len(SCALES)]
        for _ in range(tries):
            edit = space.candidates(chain, scale, rng.choice(OPS[scale]), rng)
            if edit is None:
                continue
            try:
                key = apply_edit(chain, edit).validate().to_json()
            except Exception:  # noqa: BLE001 - an invalid draw is simply redrawn
                continue
            if key not in seen:
                seen.add(key)
                out.append(edit)
                break
    if not out:
        raise EditError(f"no valid edit applies to this chain:\n{chain.describe()}")
    return out
