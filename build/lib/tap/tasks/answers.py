"""Answer extraction and correctness: the reward is only as good as this step.

Measured on SmolLM2-135M (see DESIGN.md): the extraction rule alone moves accuracy by up to 17
points, because a small model restates the question ("80 + 29 = 109"). So: the answer format's
marker ("Answer:") is honoured when present; otherwise numeric tasks take the *last* number of the
reply and text tasks the first line, or the earliest-mentioned option when the options are known.
Numbers may be written as digits ("1,000", "-3.5") or words ("twenty-one").
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

_UNITS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen".split()
    )
}
_TENS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_NUMBER_WORDS = set(_UNITS) | set(_TENS) | set(_SCALES)
_DIGITS = r"[-+]?\d[\d,]*(?:\.\d+)?"
_TOKEN = re.compile(rf"{_DIGITS}|[A-Za-z]+")
_JOINER = re.compile(r"[\s-]*(?:and[\s-]+)?")  # what may stand between the words of one number


def _continues(prev: str, word: str) -> bool:
    """Whether ``word`` extends the number that ``prev`` ends ("twenty" + "one" does, "one" + "two" not)."""
    if word in _SCALES:
        return True
    if prev in _SCALES:
        return True
    return prev in _TENS and word in _UNITS and _UNITS[word] < 10


def _words_value(words: list[str]) -> int:
    total, current = 0, 0
    for w in words:
        if w in _UNITS:
            current += _UNITS[w]
        elif w in _TENS:
            current += _TENS[w]
        elif w == "hundred":
            current = max(current, 1) * 100
        else:  # thousand, million
            total += max(current, 1) * _SCALES[w]
            current = 0
    return total + current


def _digits_value(tok: str) -> float | None:
    tok = tok.replace(",", "")
    try:
        return float(tok)
    except ValueError:
        return None


def find_numbers(text: str) -> list[float]:
    """All numbers in ``text`` in order, digits and number words (``"twenty-one"`` is 21)."""
    out: list[float] = []
    words: list[str] = []
    end = 0
    for match in _TOKEN.finditer(text):
        low = match.group().lower()
        if low == "and" and words:
            continue
        if low in _NUMBER_WORDS:
            joined = words and _JOINER.fullmatch(text[end : match.start()]) and _continues(words[-1], low)
            if words and not joined:
                out.append(float(_words_value(words)))
                words = []
            words.append(low)
            end = match.end()
            continue
        if words:
            out.append(float(_words_value(words)))
            words = []
        if low[0].isdigit() or low[0] in "+-":
            value = _digits_value(low)
            if value is not None:
                out.append(value)
    if words:
        out.append(float(_words_value(words)))
    return out


def parse_number(text: str) -> float | None:
    """The value of ``text`` if it is exactly one number (``"109"``, ``"three"``), else None."""
    stripped = text.strip().strip(".").lower()
    if not stripped:
        return None
    if re.fullmatch(_DIGITS, stripped):
        return _digits_value(stripped)
    words = re.split(r"[\s-]+", stripped)
    if all(w in _NUMBER_WORDS for w in words) and words != ["hundred"]:
        return float(_words_value(words))
    return None


_PUNCT = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    """Lower-case, drop punctuation and articles, squeeze spaces (SQuAD-style normalisation)."""
    text = text.lower().translate(_PUNCT)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def surface_normalize(text: str) -> str:
    """What a user would call the same answer: case, surrounding whitespace and punctuation (a trailing
    period, quotes) ignored, runs of whitespace squeezed; nothing else ("a" stays "a", "t, i" is not "t i").
    """
    return " ".join(text.strip().strip(string.punctuation + "“”‘’ \t").lower().split())


def answer_region(reply: str, marker: str) -> tuple[str, bool]:
    """The part of ``reply`` that holds the answer, and whether the format's marker was found.

    With a marker (e.g. ``"Answer:"``) the region starts after its last occurrence; without one, or
    when the model ignored it, the region is the whole reply.
    """
    if marker:
        idx = reply.lower().rfind(marker.lower())
        if idx >= 0:
            return reply[idx + len(marker) :].strip(), True
        return reply.strip(), False
    return reply.strip(), True


@dataclass(frozen=True)
class Judgement:
    """What was extracted from one reply and whether it is right."""

    extracted: str
    correct: bool
    compliant: bool  # the reply followed the answer format and held an extractable answer


def judge(reply: str, targets: list[str], choices: list[str], correct_choices: set[int], marker: str,
          match: str = "lenient") -> Judgement:
    """Judge a generated ``reply``.

    ``choices`` non-empty means a multiple-choice example answered by generation: the option named
    earliest in the answer region is the model's pick. Otherwise the reply is compared with
    ``targets``: with ``match="lenient"`` as numbers when the first target is numeric, else as
    normalised text (a reply that starts with the answer word counts); with ``match="surface"`` the
    first line of the answer region must equal a target up to ``surface_normalize``.
    """
    region, marker_found = answer_region(reply, marker)
    if choices:
        region_n = f" {normalize(region)} "
        hits = []
        for i, choice in enumerate(choices):
            pos = region_n.find(f" {normalize(choice)} ")
            if pos >= 0 and normalize(choice):
                hits.append((pos, -len(choice), i))
        if not hits:
            return Judgement("", False, False)
        _, _, pick = min(hits)
        return Judgement(choices[pick], pick in correct_choices, marker_found)
    if match == "surface":
        first_line = next((line for line in region.splitlines() if line.strip()), "")
        extracted = surface_normalize(first_line)
        correct = bool(extracted) and extracted in {surface_normalize(t) for t in targets}
        return Judgement(first_line.strip(), correct, marker_found and bool(extracted))
    if parse_number(targets[0]) is not None:
        numbers = find_numbers(region)
        if not numbers:
            return Judgement("", False, False)
        value = numbers[0] if (marker and marker_found) else numbers[-1]
        gold = {parse_number(t) for t in targets}
        shown = f"{value:g}"
        return Judgement(shown, value in gold, marker_found)
    first_line = next((line for line in region.splitlines() if line.strip()), "")
    extracted = normalize(first_line)
    gold_n = {normalize(t) for t in targets}
    correct = extracted in gold_n or any(extracted.startswith(g + " ") for g in gold_n if g)
    return Judgement(first_line.strip(), correct, marker_found and bool(extracted))
