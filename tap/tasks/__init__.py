"""Task sources (BIG-bench, user JSONL/CSV), the normalized schema, splits and answer extraction."""

from __future__ import annotations

from pathlib import Path

from tap.errors import TaskError
from tap.tasks.schema import Example, Metric, SplitFractions, Task, task_slug


def load_task(
    spec: str, seed: int = 0, max_examples: int | None = None, fractions: SplitFractions | None = None
) -> Task:
    """Load a task by spec: ``bigbench:NAME`` (``bigbench:parent/subtask``), ``ii:NAME`` (a shipped
    instruction-induction task) or a path to JSONL/CSV.

    The train / val / test split is a deterministic function of the task name and ``seed``;
    ``max_examples`` keeps a seeded subset (for quick runs).
    """
    match = "lenient"
    if spec.startswith("bigbench:"):
        from tap.tasks.bigbench import load_bigbench

        name = spec.split(":", 1)[1].strip("/")
        examples, metric, instruction = load_bigbench(name)
    elif spec.startswith("ii:"):
        from tap.tasks.instruction_induction import load_instruction_induction

        examples, metric, instruction = load_instruction_induction(spec[3:].strip()), "exact_match", ""
        match = "surface"
    elif Path(spec).suffix.lower() in {".jsonl", ".json", ".csv"}:
        from tap.tasks.user import load_user_task

        examples, metric, instruction = load_user_task(spec)
    else:
        raise TaskError(
            f"unknown task {spec!r}: use 'bigbench:NAME' (e.g. bigbench:object_counting, "
            "bigbench:arithmetic/2_digit_addition), 'ii:NAME' (e.g. ii:singular_to_plural; `python -m tap.tasks` "
            "lists them) or a path to a .jsonl/.csv task file."
        )
    return Task(
        name=spec,
        examples=examples,
        metric=metric,
        description=instruction,
        seed=seed,
        fractions=fractions or SplitFractions(),
        max_examples=max_examples,
        match=match,
    )


def load_tasks(specs: list[str], seed: int = 0) -> dict[str, Task]:
    """Load every task of a run before it pays for any call, so that a task this machine cannot load stops
    the run at its start, not hours in: one ``TaskError`` names each such task and why.
    """
    tasks, failed = {}, []
    for spec in specs:
        try:
            tasks[spec] = load_task(spec, seed=seed)
        except TaskError as err:
            failed.append(f"- {spec}: {err}")
    if failed:
        raise TaskError(f"{len(failed)} of the {len(specs)} tasks cannot be loaded here:\n" + "\n".join(failed)
                        + "\nFix: leave them out (--tasks lists the tasks to run), or make their source available.")
    return tasks


__all__ = ["Example", "Metric", "SplitFractions", "Task", "load_task", "load_tasks", "task_slug"]
