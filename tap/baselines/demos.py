"""Demonstrations only: choose few-shot examples from the train split, no instruction search. DSPy's
``BootstrapFewShotWithRandomSearch`` in spirit (with gold train answers as the demonstrations, which is
what bootstrapping keeps on tasks a small model cannot solve itself), and a strong baseline for small
models, whose accuracy moves most with demonstrations.

Each candidate is the initial chain with a random set of ``1..max_demos`` train demonstrations (sizes
cycle so that small and large sets are both tried early); every candidate is evaluated on all search
examples and the best is kept.
"""

from __future__ import annotations

from tap.baselines.base import demo_edits
from tap.chains.chain import Chain
from tap.search import Search


class DemosOnlySearch(Search):
    """Random search over sets of train demonstrations.

    Args:
        max_demos: most demonstrations in a candidate.
        max_draws: most candidate sets drawn (repeats are free but still drawn).
        **kwargs: ``Search`` arguments.
    """

    name = "demos"

    def __init__(self, *args, max_demos: int = 4, max_draws: int = 10_000, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if max_demos < 1:
            raise ValueError("max_demos must be >= 1.")
        self.max_demos, self.max_draws = max_demos, max_draws

    def search(self) -> None:
        if self.start.demos:
            raise ValueError("demos-only search starts from a chain without demonstrations.")
        for i in range(self.max_draws):
            demos = self.demos(1 + i % self.max_demos)
            edits = demo_edits(demos)
            chain = Chain(self.start.instruction, self.start.answer_format, self.start.steps, tuple(demos))
            if not self.known(chain):
                self.evaluate(chain, edits, note=f"{len(demos)} demos")
