"""One normalized task schema for every source (BIG-bench JSON, user JSONL/CSV)."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Literal

from tap.errors import TaskError

Metric = Literal["exact_match", "multiple_choice"]
#: how exact-match answers are compared: ``lenient`` (SQuAD-style: case, punctuation and articles dropped;
#: numbers by value) or ``surface`` (case, surrounding whitespace and punctuation only; see tap.tasks.answers)
Match = Literal["lenient", "surface"]
Split = Literal["train", "val", "test"]


@dataclass(frozen=True)
class Example:
    """One task example.

    ``targets`` are the accepted answers for exact match; ``choices``/``scores`` are the options and
    their scores (the best score marks the correct one) for multiple choice. ``uid`` is stable across
    runs (the example's position in the source file) and identifies the example in caches and splits.
    """

    uid: int
    input: str
    targets: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    scores: tuple[float, ...] = ()

    @property
    def answer(self) -> str:
        """The canonical gold answer: the best-scored choice, else the first target."""
        if self.choices:
            return self.choices[max(range(len(self.scores)), key=self.scores.__getitem__)]
        return self.targets[0]

    def correct_choices(self) -> set[int]:
        """Indices of the choices with the best score."""
        best = max(self.scores)
        return {i for i, s in enumerate(self.scores) if s == best}


@dataclass(frozen=True)
class SplitFractions:
    """Fractions of a task's examples in train / val / test (the rest of 1.0 goes to test)."""

    train: float = 0.2
    val: float = 0.3

    def __post_init__(self) -> None:
        if not (0 < self.train < 1 and 0 < self.val < 1 and self.train + self.val < 1):
            raise TaskError(
                f"split fractions train={self.train}, val={self.val} are invalid: each must be in (0, 1) "
                "and train + val < 1 so that test keeps the rest."
            )


_FILE_SUFFIXES = (".jsonl", ".csv", ".json")


def task_slug(spec: str) -> str:
    """A task's short name, the one folder names, metric names and tables use: the part after the source
    prefix with ``/`` as ``_`` (``bigbench:arithmetic/1_digit_addition`` -> ``arithmetic_1_digit_addition``,
    ``ii:sentiment`` -> ``sentiment``), or a task file's stem (``data/add.jsonl`` -> ``add``).
    """
    if spec.endswith(_FILE_SUFFIXES):
        name = spec.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    else:
        name = spec.split(":", 1)[-1].replace("/", "_")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "task"


@dataclass
class Task:
    """A task: examples, its metric and deterministic train / val / test splits.

    ``description`` is the source's own instruction (BIG-bench ``task_prefix`` or description); it
    seeds the initial chain (a task without one starts from the generic chain). ``match`` says how
    exact-match answers are compared (``Match``). Demonstrations may only come from ``train``; search
    evaluates on ``val`` (and ``train``); ``test`` is for the final, separately reported accuracy.
    """

    name: str
    examples: list[Example]
    metric: Metric
    description: str = ""
    seed: int = 0
    fractions: SplitFractions = field(default_factory=SplitFractions)
    max_examples: int | None = None
    match: Match = "lenient"

    @property
    def slug(self) -> str:
        """The task's short name (``task_slug``)."""
        return task_slug(self.name)

    def __post_init__(self) -> None:
        if self.match not in ("lenient", "surface"):
            raise TaskError(f"unknown answer match {self.match!r}; use 'lenient' or 'surface'.")
        if not self.examples:
            raise TaskError(
                f"task {self.name!r} has no examples: give a file with at least 3 rows "
                "(one per split), or choose another task."
            )
        if len(self.examples) < 3:
            raise TaskError(f"task {self.name!r} has {len(self.examples)} examples; at least 3 are needed.")
        order = list(range(len(self.examples)))
        random.Random(f"split:{self.name}:{self.seed}").shuffle(order)
        if self.max_examples is not None:
            order = order[: max(3, self.max_examples)]
        n = len(order)
        # every split keeps at least one example, and the splits never overlap
        n_train = min(max(1, round(n * self.fractions.train)), n - 2)
        n_val = min(max(1, round(n * self.fractions.val)), n - n_train - 1)
        ordered = [self.examples[i] for i in order]
        self.splits: dict[str, list[Example]] = {
            "train": ordered[:n_train],
            "val": ordered[n_train : n_train + n_val],
            "test": ordered[n_train + n_val :],
        }
        self.split_of: dict[int, str] = {ex.uid: s for s, exs in self.splits.items() for ex in exs}

    @property
    def train(self) -> list[Example]:
        return self.splits["train"]

    @property
    def val(self) -> list[Example]:
        return self.splits["val"]

    @property
    def test(self) -> list[Example]:
        return self.splits["test"]
