"""Finite payload libraries: every edit's payload is inspectable, replayable text.

The libraries are general (not tuned to any task); ``Libraries.for_task`` adds the task's own
instruction. Users can pass their own lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tap.chains.chain import AnswerFormat

#: the one chain every task without a description starts from (the same for every such task)
GENERIC_INSTRUCTION = "Respond to the input."

PHRASES: tuple[str, ...] = (
    "carefully", "step by step", "briefly", "exactly", "only", "first", "then", "finally",
    "correct", "final", "short", "precise", "simple", "clearly", "each", "all", "the answer",
    "think", "count", "check", "number", "word", "true", "false", "not", "always", "must",
)

STEPS: tuple[str, ...] = (
    "Read the question carefully.",
    "Identify what is being asked.",
    "List the relevant facts given in the question.",
    "Identify the numbers and the operation.",
    "Work out the answer step by step.",
    "Count the items one by one.",
    "Consider each option in turn.",
    "Eliminate the options that cannot be right.",
    "Check the result before answering.",
    "Compare the answer with the question.",
    "Give only the final answer.",
    "Keep the reply short.",
)

INSTRUCTIONS: tuple[str, ...] = (
    "Answer the question.",
    "Answer the question correctly.",
    "You are an expert. Solve the problem.",
    "Read the input and give the correct answer.",
    "Solve the task below. Be precise.",
    "Think about the question, then answer it.",
    "Choose the best answer.",
    "Follow the examples and answer in the same way.",
)

FORMATS: tuple[AnswerFormat, ...] = (
    AnswerFormat("", "{answer}"),
    AnswerFormat("Reply with only the answer.", "{answer}"),
    AnswerFormat("Give the answer as a single word or number, nothing else.", "{answer}"),
    AnswerFormat("End your reply with 'Answer: <answer>'.", "Answer: {answer}"),
    AnswerFormat("Reply in the form 'The answer is <answer>.'", "The answer is {answer}."),
    AnswerFormat("Write the final answer after 'Final answer:'.", "Final answer: {answer}"),
)


@dataclass(frozen=True)
class Libraries:
    """The payload libraries an edit space draws from."""

    phrases: tuple[str, ...] = PHRASES
    steps: tuple[str, ...] = STEPS
    instructions: tuple[str, ...] = INSTRUCTIONS
    formats: tuple[AnswerFormat, ...] = field(default=FORMATS)

    def for_task(self, task_instruction: str, induced: tuple[str, ...] = ()) -> Libraries:
        """The same libraries with the task's own instruction first, then ``induced`` instructions (written
        for this task by an LLM from its train pairs, ``tap.chains.induce``), then the generic ones.
        """
        own = tuple(dict.fromkeys(t.strip() for t in (task_instruction, *induced) if t.strip()))
        own = tuple(t for t in own if t not in self.instructions)
        if not own:
            return self
        return Libraries(self.phrases, self.steps, (*own, *self.instructions), self.formats)
