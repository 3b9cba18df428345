"""Instructions induced from a task's train pairs by an LLM: instruction payloads for tasks that have
no description (APE's forward template: Zhou et al., 2023, "Large Language Models Are Human-Level
Prompt Engineers", arXiv 2211.01910).

Each of ``n`` requests shows the proposer ``demos_per_prompt`` train input/output pairs (a seeded draw,
so greedy replies differ) and asks for the instruction that produced them. Replies are cleaned to one
instruction (``clean_instruction``), de-duplicated, and returned in request order. Requests go through
the proposer's call cache (a rerun pays nothing) and are counted apart from any search budget as
proposer requests. Only the train split is read, so induction never leaks val or test.
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass

from tap.llm.base import LLM, GenerationSettings

FORWARD = ("I gave a friend an instruction and {n} inputs. The friend read the instruction and wrote an output "
           "for every one of the inputs. Here are the input-output pairs:\n\n{pairs}\n\n"
           "The instruction was to")

_LABEL = re.compile(r"^\s*(?:[-*•>#]+\s*|\d+[.)]\s*)?(?:(?:new |final |improved |the )?"
                    r"(?:instruction|prompt|answer|output|text)s?\s*(?:\d+)?\s*[:=]\s*)?", re.IGNORECASE)
_RESTATED = re.compile(r"^(?:the )?instruction (?:is|was) (?:to )?", re.IGNORECASE)
_TAGS = re.compile(r"</?\s*(?:ins|prompt|instruction)\s*>", re.IGNORECASE)


def clean_instruction(text: str, echo: str = "", max_words: int = 60) -> str | None:
    """The instruction in a proposer's reply: the text inside ``<prompt>``/``<INS>`` tags if any, else the
    first line that is not an echo of the request (``echo``), without list markers, labels
    ("Instruction:", "The instruction is to") and quotes; None if no line holds a usable instruction.
    """
    tagged = re.search(r"<\s*(ins|prompt)\s*>(.*?)(?:<\s*/\s*\1\s*>|$)", text, re.IGNORECASE | re.DOTALL)
    body = tagged.group(2) if tagged else text
    seen = echo.lower()
    for raw in body.splitlines():
        line = _LABEL.sub("", _TAGS.sub(" ", raw).strip()).strip().strip("\"'`“”").strip()
        line = _RESTATED.sub("", line).strip()
        words = line.split()
        if len(words) < 2 or sum(c.isalpha() for c in line) < 5 or line.lower().rstrip(":.") in seen:
            continue
        line = " ".join(words[:max_words])
        return line[0].upper() + line[1:]
    return None


def forward_request(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    """APE's forward-generation chat for input/output ``pairs``."""
    text = "\n\n".join(f"Input: {i}\nOutput: {o}" for i, o in pairs)
    return [{"role": "user", "content": FORWARD.format(n=len(pairs), pairs=text)}]


@dataclass(frozen=True)
class Induction:
    """Induced instructions and what inducing them cost (proposer requests, never a search's budget)."""

    instructions: tuple[str, ...]
    model: str
    requests: int
    llm_calls: int  # real (uncached) proposer calls
    cache_hits: int

    def costs(self) -> dict:
        out = asdict(self)
        del out["instructions"]
        return {**out, "induced": len(self.instructions)}


def default_count(task, requested: int | None = None) -> int:
    """How many instructions to induce: ``requested`` if given, else 8 for a task with no description of
    its own (the generic instruction is all it has) and 0 for one that has a description.
    """
    if requested is not None:
        if requested < 0:
            raise ValueError(f"the number of induced instructions must be >= 0, got {requested}.")
        return requested
    return 0 if task.description.strip() else 8


def induce_instructions(proposer: LLM, task, n: int = 8, seed: int = 0, demos_per_prompt: int = 5,
                        max_new_tokens: int = 48, exclude: tuple[str, ...] = ()) -> Induction:
    """Up to ``n`` distinct instructions induced from ``task``'s train pairs by ``proposer`` (greedy,
    deterministic under ``seed`` and the call cache); texts in ``exclude`` (e.g. the library's) are dropped.
    """
    if n < 0 or demos_per_prompt < 1:
        raise ValueError(f"n must be >= 0 and demos_per_prompt >= 1 (got {n}, {demos_per_prompt}).")
    calls0, hits0 = getattr(proposer, "calls", 0), getattr(proposer, "hits", 0)
    name = getattr(proposer, "name", "")
    if n == 0 or not task.train:
        return Induction((), name, 0, 0, 0)
    rng = random.Random(f"induce:{task.name}:{seed}")
    requests = []
    for _ in range(n):
        pairs = rng.sample(task.train, min(demos_per_prompt, len(task.train)))
        requests.append(forward_request([(ex.input, ex.answer) for ex in pairs]))
    prompts = [proposer.format_chat(r) for r in requests]
    replies = proposer.generate(prompts, GenerationSettings(max_new_tokens=max_new_tokens, stop=("\n\n",)))
    seen = {e.strip().lower() for e in exclude}
    out: list[str] = []
    for reply, req in zip(replies, requests):
        text = clean_instruction(reply, echo=req[0]["content"])
        if text and text.strip().lower() not in seen:
            seen.add(text.strip().lower())
            out.append(text)
    return Induction(tuple(out), name, len(requests), getattr(proposer, "calls", 0) - calls0,
                     getattr(proposer, "hits", 0) - hits0)
