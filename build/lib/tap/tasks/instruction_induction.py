"""Instruction-induction tasks (``ii:NAME``): the input alone does not say what to do, the chain does.

21 small tasks ("game" -> "games", "time" -> "t") from the Instruction Induction benchmark (Honovich et
al., 2022, arXiv 2205.10782) as distributed in the APE repository (MIT License, Copyright (c) 2022
keirp); origin, license and conversion are in ``instruction_induction/SOURCE.md`` beside this file,
which ships as package data so ``pip install .`` has the tasks. They have no description: a search
starts from the same generic chain on every one of them (``tap.chains.GENERIC_INSTRUCTION``), and
answers are judged by surface match (``tap.tasks.answers.surface_normalize``), since SQuAD-style
normalisation would erase answers such as the article "a" (orthography_starts_with).
"""

from __future__ import annotations

import difflib
import json
from importlib import resources
from pathlib import Path

from tap.errors import TaskError
from tap.tasks.schema import Example

PREFIX = "ii:"


def _folder() -> Path:
    return Path(str(resources.files("tap.tasks") / "instruction_induction"))


def ii_task_names() -> list[str]:
    """The shipped instruction-induction task names (without the ``ii:`` prefix), sorted."""
    return sorted(p.stem for p in _folder().glob("*.jsonl"))


def load_instruction_induction(name: str) -> list[Example]:
    """Examples of the instruction-induction task ``name`` (every accepted answer kept as a target)."""
    names = ii_task_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(PREFIX + c for c in close)}?" if close else ""
        raise TaskError(f"unknown instruction-induction task {name!r}.{hint} `python -m tap.tasks` lists the "
                        f"{len(names)} shipped tasks ({PREFIX}{names[0]} ... {PREFIX}{names[-1]}).")
    path = _folder() / f"{name}.jsonl"
    examples = []
    with path.open(encoding="utf-8") as f:
        for uid, line in enumerate(f):
            try:
                row = json.loads(line)
                targets = row["target"]
                targets = [targets] if isinstance(targets, str) else list(targets)
                examples.append(Example(uid, str(row["input"]), tuple(str(t) for t in targets if str(t).strip())))
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise TaskError(f"{path}, line {uid + 1} is damaged ({err}); reinstall the package.") from err
            if not examples[-1].targets:
                raise TaskError(f"{path}, line {uid + 1} has no answer; reinstall the package.")
    return examples
