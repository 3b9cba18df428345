"""OPRO-style optimisation by prompting (Yang et al., 2024, "Large Language Models as Optimizers"): a
meta-prompt lists the best instructions so far with their scores, in ascending order, and a few task
exemplars; the proposer LLM writes a new instruction meant to score higher.

Per step, ``per_step`` meta-prompts are built, each with its own random draw of train exemplars (OPRO
samples at temperature 1; greedy decoding with different exemplars keeps runs reproducible and cached),
and each new instruction is evaluated on all search examples. Scores shown are accuracies in 0-100 as in
the paper; the list keeps the ``top_k`` best.
"""

from __future__ import annotations

from tap.search import Search

META = ("Your task is to generate the instruction <INS>. Below are some previous instructions with their "
        "scores. The score ranges from 0 to 100.\n\n{history}\n\nBelow are some problems.\n\n{exemplars}\n\n"
        "Generate an instruction that is different from all the instructions <INS> above, and has a higher "
        "score than all the instructions <INS> above. The instruction should begin with <INS> and end with "
        "</INS>. The instruction should be concise, effective, and generally applicable to all problems above.")


class OproSearch(Search):
    """Meta-prompt optimisation over instructions.

    Args:
        per_step: instructions proposed (and evaluated) per step.
        top_k: best instructions shown in the meta-prompt.
        exemplars: train exemplars shown per meta-prompt.
        **kwargs: ``Search`` arguments.
    """

    name = "opro"

    def __init__(self, *args, per_step: int = 4, top_k: int = 20, exemplars: int = 3, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if per_step < 1 or top_k < 1 or exemplars < 0:
            raise ValueError("per_step and top_k must be >= 1, exemplars >= 0.")
        self.per_step, self.top_k, self.exemplars = per_step, top_k, exemplars
        self._scores: dict[str, float] = {}

    def meta_prompt(self) -> str:
        best = sorted(self._scores.items(), key=lambda kv: (kv[1], kv[0]))[-self.top_k:]  # ascending
        history = "\n\n".join(f"text:\n{text}\nscore:\n{round(100 * acc)}" for text, acc in best)
        shown = self.demos(self.exemplars)
        exemplars = "\n\n".join(f"input:\nQ: <INS>\n{d.input}\nA:\noutput:\n{d.output}" for d in shown)
        return META.format(history=history, exemplars=exemplars)

    def search(self) -> None:
        self._scores[self.start.instruction] = self.score_of(self.start).accuracy
        while True:  # until the budget or the proposer requests are spent
            replies = self.propose([[{"role": "user", "content": self.meta_prompt()}] for _ in range(self.per_step)])
            for text in [t for t in dict.fromkeys(replies) if t and t not in self._scores]:
                chain, edits = self.with_instruction(text)
                self._scores[text] = self.evaluate(chain, edits, note="opro").accuracy
