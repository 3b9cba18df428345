"""Task sources (BIG-bench, user JSONL/CSV), the normalized schema, splits and answer extraction."""

from __future__ import annotations

from pathlib import Path

from tap.errors import TaskError
from tap.tasks.schema import Example, Metric, SplitFractions, Task


def load_task(
    spec: str, seed: int = 0, max_examples: int | None = None, fractions: SplitFractions | None = None
) -> Task:
    """Load a task by spec: ``bigbench:NAME`` (``bigbench:parent/subtask``) or a path to JSONL/CSV.

    The train / val / test split is a deterministic function of the task name and ``seed``;
    ``max_examples`` keeps a seeded subset (for quick runs).
    """
    if spec.startswith("bigbench:"):
        from tap.tasks.bigbench import load_bigbench

        name = spec.split(":", 1)[1].strip("/")
        examples, metric, instruction = load_bigbench(name)
    elif Path(spec).suffix.lower() in {".jsonl", ".json", ".csv"}:
        from tap.tasks.user import load_user_task

        examples, metric, instruction = load_user_task(spec)
    else:
        raise TaskError(
            f"unknown task {spec!r}: use 'bigbench:NAME' (e.g. bigbench:object_counting, "
            "bigbench:arithmetic/2_digit_addition) or a path to a .jsonl/.csv task file."
        )
    return Task(
        name=spec,
        examples=examples,
        metric=metric,
        description=instruction,
        seed=seed,
        fractions=fractions or SplitFractions(),
        max_examples=max_examples,
    )


__all__ = ["Example", "Metric", "SplitFractions", "Task", "load_task"]
