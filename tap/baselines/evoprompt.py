"""EvoPrompt-style evolutionary search (Guo et al., 2024, "Connecting Large Language Models with
Evolutionary Algorithms Yields Powerful Prompt Optimizers"), its genetic-algorithm variant: the proposer
LLM performs crossover and mutation of two parent instructions chosen by roulette wheel on their scores.

The initial population is the task's own instruction and the instruction library TaP's edit space uses
(EvoPrompt starts from manual prompts), evaluated on all search examples. Each generation makes
``population`` children with EvoPrompt's GA template; each child is evaluated, and the next population is
the best ``population`` of parents and children.
"""

from __future__ import annotations

from tap.chains.chain import Chain
from tap.chains.edits import Edit
from tap.search import Search

GA = ("Please follow the instruction step-by-step to generate a better prompt.\n"
      "1. Cross over the following prompts and generate a new prompt:\n"
      "Prompt 1: {p1}\nPrompt 2: {p2}\n"
      "2. Mutate the prompt generated in Step 1 and generate a final prompt bracketed with <prompt> and </prompt>.")


class EvoPromptSearch(Search):
    """Genetic-algorithm instruction search with LLM crossover and mutation.

    Args:
        population: population size (the initial one is the task's instruction plus library instructions).
        max_generations: most generations (the budget or ``max_stall`` normally ends the search first).
        **kwargs: ``Search`` arguments.
    """

    name = "evoprompt"

    def __init__(self, *args, population: int = 6, max_generations: int = 1000, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if population < 2:
            raise ValueError("population must be >= 2 (crossover needs two parents).")
        self.population, self.max_generations = population, max_generations

    def _parents(self, pop: list[tuple[Chain, list[Edit]]]) -> tuple[str, str]:
        weights = [self.score_of(c).accuracy + 1e-3 for c, _ in pop]  # roulette wheel; all-zero scores stay uniform
        i = self.rng.choices(range(len(pop)), weights=weights)[0]
        rest = [k for k in range(len(pop)) if k != i]
        j = self.rng.choices(rest, weights=[weights[k] for k in rest])[0]
        return pop[i][0].instruction, pop[j][0].instruction

    def search(self) -> None:
        texts = list(dict.fromkeys([self.start.instruction, *self.space.libraries.instructions]))[: self.population]
        pop = [self.with_instruction(t) for t in texts]
        for chain, edits in pop:
            self.evaluate(chain, edits, note="evoprompt initial")
        for _ in range(self.max_generations):
            requests = [[{"role": "user", "content": GA.format(p1=p1, p2=p2)}]
                        for p1, p2 in (self._parents(pop) for _ in range(self.population))]
            children = []
            for text in self.propose(requests):
                if text is None:
                    continue
                chain, edits = self.with_instruction(text)
                self.evaluate(chain, edits, note="evoprompt child")
                children.append((chain, edits))
            union = {c.to_json(): (c, e) for c, e in [*pop, *children]}
            ranked = sorted(union.values(), key=lambda ce: (-self.score_of(ce[0]).accuracy,
                                                            -self.score_of(ce[0]).dense))
            pop = ranked[: self.population]
