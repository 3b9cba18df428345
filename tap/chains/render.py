"""Deterministic rendering of (chain, example input) to chat messages and to the model's prompt."""

from __future__ import annotations

from collections.abc import Sequence

from tap.chains.chain import Chain
from tap.llm.prompt import Message, plain_prompt  # noqa: F401 - plain_prompt re-exported for renderers' users


def system_text(chain: Chain) -> str:
    """Instruction, numbered steps and the answer-format spec, as one block."""
    parts = []
    if chain.instruction.strip():
        parts.append(chain.instruction.strip())
    if chain.steps:
        parts.append("Steps:\n" + "\n".join(f"{i + 1}. {s}" for i, s in enumerate(chain.steps)))
    if chain.answer_format.spec.strip():
        parts.append(chain.answer_format.spec.strip())
    return "\n\n".join(parts)


def user_text(question: str, choices: Sequence[str] = ()) -> str:
    """The question, followed by its options when the task is multiple choice."""
    if choices:
        return f"{question}\nOptions: {', '.join(choices)}"
    return question


def render_messages(chain: Chain, question: str, choices: Sequence[str] = ()) -> list[Message]:
    """Chat messages: a system block, demonstrations as user/assistant turns, then the question.

    Demonstrations carry their options only when the question does (same task, same shape), and
    their answers in the chain's answer format, so the model sees the format followed.
    """
    chain.validate()
    messages: list[Message] = []
    system = system_text(chain)
    if system:
        messages.append({"role": "system", "content": system})
    for demo in chain.demos:
        messages.append({"role": "user", "content": user_text(demo.input, choices)})
        messages.append({"role": "assistant", "content": chain.answer_format.render(demo.output)})
    messages.append({"role": "user", "content": user_text(question, choices)})
    return messages


def answer_prefix(chain: Chain) -> tuple[str, str]:
    """Split the format template around ``{answer}``: (text before, text after).

    Scoring mode appends the text before to the prompt and scores ``answer`` + text after as the
    continuation, so that likelihoods are compared in the chain's own format.
    """
    before, after = chain.answer_format.template.split("{answer}")
    return before, after


def prompt_chars(chain: Chain) -> int:
    """Characters the chain puts before the question (system block and demonstration turns): how much it tells
    the model. An edit's change in it is known before any evaluation.
    """
    return sum(len(m["content"]) for m in render_messages(chain, ""))


def prompt_text(chain: Chain) -> str:
    """What the chain tells the model before the question (system block and demonstration turns), as one text."""
    return "\n\n".join(m["content"] for m in render_messages(chain, "") if m["content"])


def chain_views(chain: Chain) -> dict[str, object]:
    """The chain's text at each scale, for the encoder.

    - ``instruction``: instruction, answer-format spec and demonstrations (the instruction scale);
    - ``segments``: the instruction followed by each step (segment scale; index = token-scale segment);
    - ``tokens``: the words of instruction and steps in order (token scale).
    """
    demos = "\n".join(f"Example: {d.input} -> {chain.answer_format.render(d.output)}" for d in chain.demos)
    head = "\n".join(p for p in (chain.instruction, chain.answer_format.spec, demos) if p.strip())
    return {
        "instruction": head,
        "segments": list(chain.segments),
        "tokens": " ".join(" ".join(s.split()) for s in chain.segments if s.strip()),
    }


#: what ``chain_stats`` returns, in order
CHAIN_STATS = ("demos", "steps", "instruction_words", "format_spec", "no_demos")


def chain_stats(chain: Chain) -> list[float]:
    """The chain's structure as a few numbers on a similar scale (``CHAIN_STATS``): demonstrations and steps
    (/ 8), words of the instruction (log1p / 5), whether it has an answer-format spec, and whether it has
    no demonstration at all. What an edit does often depends on these (a first demonstration helps far
    more than a fifth), and a frozen text encoder represents counts poorly.
    """
    import math

    return [len(chain.demos) / 8, len(chain.steps) / 8, math.log1p(len(chain.instruction.split())) / 5,
            float(bool(chain.answer_format.spec.strip())), float(not chain.demos)]
