"""Random edit search: the same edit space as TaP, with no model of what an edit does.

Each step draws one random valid edit of the incumbent (any of the three scales, uniformly), pays for
the edited chain, and keeps it if it scores better (accuracy, then gold-answer probability): stochastic
hill climbing. The edits are the ones TaP plans over, so the difference to TaP is the planning alone.
"""

from __future__ import annotations

from tap.chains.edits import apply_edit
from tap.search import Search


class RandomEditSearch(Search):
    """Stochastic hill climbing with random edits from TaP's edit space.

    Args:
        max_draws: most edits drawn in all (repeats of evaluated chains are free but still drawn).
        **kwargs: ``Search`` arguments.
    """

    name = "random"

    def __init__(self, *args, max_draws: int = 10_000, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_draws = max_draws

    def search(self) -> None:
        for _ in range(self.max_draws):
            edit = self.space.sample(self.best, self.rng)
            chain = apply_edit(self.best, edit)
            if not self.known(chain):
                self.evaluate(chain, [*self.best_edits, edit], note=f"edit {edit.scale}.{edit.op}")
