"""GrIPS-style greedy edit search (Prasad et al., 2023, "GrIPS: Gradient-free, Edit-based Instruction
Search"): edit the instruction's phrases, keep the best candidate if it beats the incumbent, stop when
``patience`` rounds in a row bring nothing.

Each round makes ``num_candidates`` candidates from the incumbent, each by ``num_compose`` edits of its
instruction drawn from GrIPS's operators: add a phrase, delete a word, swap two words, substitute a
word with a phrase (phrases from TaP's phrase library; GrIPS splits phrases with a constituency parser
and paraphrases with PEGASUS, which we replace by the library so every edit is replayable text). All
candidates of a round are evaluated on the full search examples; GrIPS's acceptance is greedy.
"""

from __future__ import annotations

from tap.baselines.base import safe
from tap.chains.chain import Chain
from tap.chains.edits import Edit, apply_edit
from tap.search import Search

OPERATORS = ("add", "delete", "swap", "replace")  # GrIPS: add, del, swap, par(aphrase/substitute)


class GripsSearch(Search):
    """Greedy instruction edit search with patience.

    Args:
        num_candidates: candidates evaluated per round.
        num_compose: edits composed into each candidate.
        patience: rounds without improvement before the search stops (its remaining budget unspent).
        **kwargs: ``Search`` arguments.
    """

    name = "grips"

    def __init__(self, *args, num_candidates: int = 5, num_compose: int = 1, patience: int = 2,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if num_candidates < 1 or num_compose < 1 or patience < 1:
            raise ValueError("num_candidates, num_compose and patience must be >= 1.")
        self.num_candidates, self.num_compose, self.patience = num_candidates, num_compose, patience

    def _edit(self, chain: Chain) -> Edit | None:
        words = chain.words(0)
        op = self.rng.choice(OPERATORS if words else ("add",))
        phrases = self.space.libraries.phrases
        if op == "add":
            return Edit("token", "add", (0, self.rng.randint(0, len(words))), self.rng.choice(phrases))
        if op == "swap":
            pairs = [i for i in range(len(words) - 1) if words[i] != words[i + 1]]
            return Edit("token", "swap", (0, self.rng.choice(pairs))) if pairs else None
        pos = self.rng.randrange(len(words))
        if op == "delete":
            return Edit("token", "delete", (0, pos))
        fresh = [p for p in phrases if p != words[pos]]
        return Edit("token", "replace", (0, pos), self.rng.choice(fresh))

    def _candidate(self, chain: Chain) -> tuple[Chain, list[Edit]] | None:
        edits: list[Edit] = []
        for _ in range(self.num_compose):
            edit = self._edit(chain)
            nxt = safe(lambda c=chain, e=edit: apply_edit(c, e)) if edit is not None else None
            if nxt is None:
                return None
            chain, edits = nxt, [*edits, edit]
        return chain, edits

    def search(self) -> None:
        left = self.patience
        while left > 0:
            base, base_edits, incumbent = self.best, self.best_edits, self.best_eval
            round_: dict[str, tuple[Chain, list[Edit]]] = {}
            for _ in range(self.num_candidates * 20):  # redraw duplicates and invalid edits
                if len(round_) == self.num_candidates:
                    break
                made = self._candidate(base)
                if made is not None and made[0] != base:
                    round_.setdefault(made[0].to_json(), made)
            for chain, edits in round_.values():  # the best of the round replaces the base if it is better
                self.evaluate(chain, [*base_edits, *edits], note="grips " + "+".join(e.op for e in edits))
            left = self.patience if self.best_eval is not incumbent else left - 1
