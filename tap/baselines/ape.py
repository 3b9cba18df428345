"""APE-style instruction induction (Zhou et al., 2023, "Large Language Models Are Human-Level Prompt
Engineers"): the proposer LLM reads input-output pairs from the train split and writes the instruction
that would produce them; candidates are selected by successive halving on growing minibatches.

Each round proposes ``proposals`` instructions: in the first round all by forward generation (APE's
"I gave a friend an instruction and N inputs..." template, each with its own random draw of train
demonstrations, which is what makes greedy proposals differ); in later rounds half are APE's iterative
Monte Carlo resampling ("Generate a variation of the following instruction...") of the best instructions
so far. Survivors of each halving rung are evaluated on more search examples (``rungs``: 4, 8, then all
16 by default); only the last rung, on all examples, can replace the incumbent. Partial evaluations pay
their fraction of a chain evaluation (``Search.evaluate``). An instruction eliminated at a rung may be
proposed again in a later round and compete again; the examples it was evaluated on are not paid twice.
"""

from __future__ import annotations

from tap.chains.chain import Chain
from tap.chains.edits import Edit
from tap.chains.induce import forward_request
from tap.search import Search

VARIATION = ("Generate a variation of the following instruction while keeping the semantic meaning.\n\n"
             "Input: {instruction}\n\nOutput:")


class ApeSearch(Search):
    """Instruction induction from demonstrations with successive-halving selection.

    Args:
        proposals: instructions proposed per round.
        demos_per_proposal: train demonstrations shown to the proposer per forward proposal.
        rungs: search examples per halving rung (the last is raised to all search examples).
        max_rounds: most rounds (the budget or ``max_stall`` normally ends the search first).
        **kwargs: ``Search`` arguments.
    """

    name = "ape"

    def __init__(self, *args, proposals: int = 8, demos_per_proposal: int = 5, rungs: tuple[int, ...] = (4, 8),
                 max_rounds: int = 100, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if proposals < 1 or demos_per_proposal < 1:
            raise ValueError("proposals and demos_per_proposal must be >= 1.")
        self.proposals_per_round, self.demos_per_proposal = proposals, demos_per_proposal
        self.rungs = tuple(sorted({min(r, len(self.examples)) for r in rungs if r > 0}))
        self.max_rounds = max_rounds
        self._scores: dict[str, float] = {}  # instruction -> accuracy on all search examples

    def _forward(self) -> list[dict[str, str]]:
        return forward_request([(d.input, d.output) for d in self.demos(self.demos_per_proposal)])

    def _round(self, r: int) -> list[tuple[Chain, list[Edit]]]:
        top = sorted(self._scores, key=lambda s: -self._scores[s])[:2]
        requests = [[{"role": "user", "content": VARIATION.format(instruction=top[i % len(top)])}]
                    if r > 0 and i % 2 else self._forward() for i in range(self.proposals_per_round)]
        texts = [t for t in dict.fromkeys(self.propose(requests)) if t and t not in self._scores]
        return [self.with_instruction(t) for t in texts]

    def search(self) -> None:
        self._scores[self.start.instruction] = self.score_of(self.start).accuracy
        for r in range(self.max_rounds):
            pool = self._round(r)
            for n in self.rungs:  # successive halving: the better half goes on to more examples
                if len(pool) <= 1:
                    break
                scored = [(self.evaluate(c, e, n=n, note=f"ape rung {n}"), c, e) for c, e in pool]
                scored.sort(key=lambda x: (-x[0].accuracy, -x[0].dense))
                pool = [(c, e) for _, c, e in scored[: max(1, len(scored) // 2)]]
            for chain, edits in pool:
                self._scores[chain.instruction] = self.evaluate(chain, edits, note="ape full").accuracy
