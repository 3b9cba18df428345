"""The reasoning chain at three scales: instruction (+ answer format + demonstrations), steps, tokens."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from tap.errors import ChainError

#: the JSON form of a chain, shown in error messages
CHAIN_SHAPE = ('{"instruction": "text", "answer_format": {"spec": "text", "template": "... {answer} ..."}, '
               '"steps": ["text", ...], "demos": [{"uid": 3, "input": "text", "output": "text"}, ...]} '
               "(every key optional), as Chain.to_json() and final_chain.json write it.")


@dataclass(frozen=True)
class AnswerFormat:
    """How the model should state its answer.

    ``spec`` is the sentence shown to the model; ``template`` shapes demonstration answers and holds
    exactly one ``{answer}``. The text before ``{answer}`` (e.g. ``"Answer:"``) is the marker that
    answer extraction looks for.
    """

    spec: str = ""
    template: str = "{answer}"

    def __post_init__(self) -> None:
        if self.template.count("{answer}") != 1:
            raise ChainError(f"answer template {self.template!r} must contain '{{answer}}' exactly once.")

    @property
    def marker(self) -> str:
        return self.template.split("{answer}")[0].strip()

    def render(self, answer: str) -> str:
        return self.template.replace("{answer}", answer)


@dataclass(frozen=True)
class Demo:
    """A demonstration: a train-split example (``uid``) with its gold answer."""

    uid: int
    input: str
    output: str


@dataclass(frozen=True)
class Chain:
    """A reasoning chain. Immutable: edits return new chains.

    Token scale: the whitespace-separated words of segment 0 (the instruction) and segments
    1..n (the steps).
    """

    instruction: str = ""
    answer_format: AnswerFormat = field(default_factory=AnswerFormat)
    steps: tuple[str, ...] = ()
    demos: tuple[Demo, ...] = ()

    def validate(self) -> Chain:
        """Raise ``ChainError`` if the chain cannot guide a model; return it otherwise."""
        if not (self.instruction.strip() or self.steps or self.demos or self.answer_format.spec.strip()):
            raise ChainError(
                "the chain is empty (no instruction, steps, demonstrations or answer format): give it at "
                "least an instruction, e.g. Chain(instruction='Answer the question.')."
            )
        if any(not s.strip() for s in self.steps):
            raise ChainError("a chain step is empty; delete it or give it text.")
        uids = [d.uid for d in self.demos]
        if len(set(uids)) != len(uids):
            raise ChainError(f"a demonstration appears twice (uids {uids}); remove the duplicate.")
        return self

    # --- token scale -------------------------------------------------------------------------
    @property
    def segments(self) -> tuple[str, ...]:
        """Segment 0 is the instruction, segment i >= 1 is step i-1."""
        return (self.instruction, *self.steps)

    def words(self, segment: int) -> list[str]:
        if not 0 <= segment < len(self.segments):
            raise IndexError(segment)
        return self.segments[segment].split()

    def with_segment(self, segment: int, text: str) -> Chain:
        if segment == 0:
            return replace(self, instruction=text)
        steps = list(self.steps)
        steps[segment - 1] = text
        return replace(self, steps=tuple(steps))

    # --- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Chain:
        """A chain from its JSON form (as ``to_dict`` writes it); types and keys are checked."""
        def bad(what: str) -> ChainError:
            return ChainError(f"malformed chain JSON: {what}. Expected {CHAIN_SHAPE}")

        if not isinstance(data, dict):
            raise bad(f"a chain must be a JSON object, got {type(data).__name__}")
        unknown = set(data) - {"instruction", "answer_format", "steps", "demos"}
        if unknown:
            raise bad(f"unknown key(s) {sorted(unknown)}")
        instruction = data.get("instruction", "")
        if not isinstance(instruction, str):
            raise bad(f"'instruction' must be text, got {type(instruction).__name__} {instruction!r}")
        steps = data.get("steps", [])
        if not isinstance(steps, list | tuple) or not all(isinstance(x, str) for x in steps):
            raise bad(f"'steps' must be a list of texts, got {steps!r}")
        fmt = data.get("answer_format", {})
        if not isinstance(fmt, dict) or set(fmt) - {"spec", "template"} or not all(
                isinstance(v, str) for v in fmt.values()):
            raise bad(f"'answer_format' must be an object with text 'spec' and 'template', got {fmt!r}")
        demos = data.get("demos", [])
        if not isinstance(demos, list | tuple) or not all(
                isinstance(d, dict) and set(d) == {"uid", "input", "output"} and isinstance(d["uid"], int)
                and isinstance(d["input"], str) and isinstance(d["output"], str) for d in demos):
            raise bad(f"'demos' must be a list of objects with an integer 'uid' and text 'input' and 'output', "
                      f"got {demos!r}"[:300])
        return cls(instruction=instruction, answer_format=AnswerFormat(**fmt), steps=tuple(steps),
                   demos=tuple(Demo(**d) for d in demos))

    @classmethod
    def from_json(cls, text: str) -> Chain:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as err:
            raise ChainError(f"chain is not valid JSON: {err}") from err

    def describe(self) -> str:
        """A human-readable multi-line view of the chain."""
        lines = [f"instruction: {self.instruction!r}", f"format: {self.answer_format.spec!r} "
                 f"(template {self.answer_format.template!r})"]
        lines += [f"step {i + 1}: {s}" for i, s in enumerate(self.steps)]
        lines += [f"demo {i + 1} (train uid {d.uid}): {d.input!r} -> {d.output!r}" for i, d in enumerate(self.demos)]
        return "\n".join(lines)
