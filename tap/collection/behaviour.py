"""The behaviour policy that explores the edit space while collecting world-model data."""

from __future__ import annotations

import random

from tap.chains.chain import Chain
from tap.chains.edits import SCALES, Edit, EditSpace, apply_edit
from tap.errors import TapError


class BehaviourPolicy:
    """Random valid edits with a chosen mix of the three scales.

    Args:
        space: the task's edit space (libraries + train demonstrations).
        scale_weights: relative frequency of instruction / segment / token edits. The default leans
            to instruction-scale edits (demonstrations and answer format move small models most) while
            keeping every scale in the data.
    """

    DEFAULT_WEIGHTS = {"instruction": 0.5, "segment": 0.25, "token": 0.25}

    def __init__(self, space: EditSpace, scale_weights: dict[str, float] | None = None) -> None:
        weights = dict(scale_weights or self.DEFAULT_WEIGHTS)
        unknown = set(weights) - set(SCALES)
        if unknown or not any(v > 0 for v in weights.values()) or any(v < 0 for v in weights.values()):
            raise TapError(f"scale_weights {weights} are invalid: keys must be among {list(SCALES)}, "
                           "values non-negative, and at least one positive.")
        self.space = space
        self.scale_weights = weights

    def act(self, chain: Chain, rng: random.Random) -> Edit:
        return self.space.sample(chain, rng, self.scale_weights)

    def siblings(self, chain: Chain, k: int, rng: random.Random) -> list[tuple[Edit, Chain]]:
        """Up to ``k`` edits of ``chain`` drawn like ``act`` whose children are distinct chains (and differ
        from ``chain``): the sibling group a search chooses from at this chain.
        """
        out: list[tuple[Edit, Chain]] = []
        seen = {chain.to_json()}
        for _ in range(20 * k):
            if len(out) == k:
                break
            edit = self.act(chain, rng)
            child = apply_edit(chain, edit)
            if child.to_json() not in seen:
                seen.add(child.to_json())
                out.append((edit, child))
        return out
