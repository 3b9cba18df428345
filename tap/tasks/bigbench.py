"""BIG-bench JSON tasks, read from the ``bigbench==1.0.0`` source distribution without installing it.

The sdist (358 MB) is fetched once from the package registry with ``pip download`` into the cache;
only the requested ``task.json`` is extracted from it (one streaming pass over the archive, ~7 s),
and a list of the task names is kept beside it so unknown names fail fast with suggestions.
"""

from __future__ import annotations

import difflib
import json
import os
import tarfile
import tempfile
from pathlib import Path

from tap.errors import TaskError
from tap.paths import cache_dir, pip_download
from tap.tasks.schema import Example, Metric

SDIST = "bigbench==1.0.0"
_PREFIX = "bigbench/benchmark_tasks/"


def _root() -> Path:
    root = cache_dir() / "bigbench"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _sdist_path() -> Path:
    """The cached sdist, downloaded once with pip (the registry is the only network we may use)."""
    root = _root()
    found = sorted(root.glob("bigbench-1.0.0.tar.gz"))
    if found:
        return found[0]
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        try:
            downloaded = pip_download(SDIST, Path(tmp), "bigbench-*.tar.gz", sdist=True)
        except RuntimeError as err:
            raise TaskError(
                f"could not download the BIG-bench source from the package registry: {err}\nFix: check that "
                f"pip can reach the registry, or place bigbench-1.0.0.tar.gz in {root} by hand (some registries "
                "no longer serve it), or use the instruction-induction tasks that ship with TaP (`python -m "
                "tap.tasks` lists them; configs/data/ii_pool_qwen.yaml is a training pool of them alone)."
            ) from err
        target = root / downloaded.name
        os.replace(downloaded, target)
    return target


def _task_index(sdist: Path) -> list[str]:
    """All task names with a ``task.json`` (subtasks as ``parent/sub``), cached as JSON."""
    index = _root() / "index.json"
    if index.exists():
        return json.loads(index.read_text())
    names = []
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar:
            name = member.name.split("/", 1)[-1]
            if name.startswith(_PREFIX) and name.endswith("/task.json"):
                names.append(name[len(_PREFIX) : -len("/task.json")])
    names.sort()
    _atomic_write(index, json.dumps(names))
    return names


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def task_names() -> list[str]:
    """Every BIG-bench JSON task name, subtasks included (fetches the sdist on first use)."""
    return _task_index(_sdist_path())


def task_json(name: str) -> dict:
    """The parsed ``task.json`` of ``name`` (e.g. ``"arithmetic/2_digit_addition"``), extracted once."""
    target = _root() / "tasks" / name / "task.json"
    if not target.exists():
        sdist = _sdist_path()
        names = _task_index(sdist)
        if name not in names:
            close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise TaskError(
                f"unknown BIG-bench task {name!r}.{hint} Subtasks are named 'parent/subtask' "
                f"(e.g. 'arithmetic/2_digit_addition'); `python -m tap.tasks` lists all {len(names)} names."
            )
        wanted = f"{_PREFIX}{name}/task.json"
        with tarfile.open(sdist, "r:gz") as tar:
            for member in tar:
                if member.name.split("/", 1)[-1] == wanted:
                    data = tar.extractfile(member).read().decode("utf-8")
                    break
            else:  # the index said it is there
                raise TaskError(f"{wanted} is missing from {sdist}; delete that file to fetch it again.")
        target.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(target, data)
    try:
        return json.loads(target.read_text())
    except json.JSONDecodeError as err:
        raise TaskError(f"{target} is not valid JSON ({err}); delete it and it is extracted again.") from err


def load_bigbench(name: str) -> tuple[list[Example], Metric, str]:
    """Examples, metric and instruction of a BIG-bench JSON task."""
    data = task_json(name)
    raw = data.get("examples") or []
    if not raw:
        subs = [n for n in task_names() if n.startswith(name + "/")]
        if subs:
            raise TaskError(
                f"BIG-bench task {name!r} is split into subtasks; name one: "
                + ", ".join(f"bigbench:{s}" for s in subs[:12])
                + (" ..." if len(subs) > 12 else "")
            )
        raise TaskError(
            f"BIG-bench task {name!r} has no JSON examples (it is a programmatic task); choose a JSON task."
        )
    metrics = data.get("metrics", [])
    preferred = data.get("preferred_score", "")
    has_choices = all("target_scores" in ex for ex in raw)
    has_targets = all("target" in ex for ex in raw)
    if preferred == "multiple_choice_grade" and has_choices:
        metric: Metric = "multiple_choice"
    elif has_targets and ("exact_str_match" in metrics or not has_choices):
        metric = "exact_match"
    elif has_choices:
        metric = "multiple_choice"
    else:
        raise TaskError(f"BIG-bench task {name!r} has neither targets nor target_scores on every example.")
    examples = []
    for uid, ex in enumerate(raw):
        targets = ex.get("target", [])
        targets = (targets,) if isinstance(targets, str) else tuple(str(t) for t in targets)
        scores = ex.get("target_scores") or {}
        if metric == "multiple_choice":
            examples.append(
                Example(uid, ex["input"], targets, tuple(scores), tuple(float(s) for s in scores.values()))
            )
        else:
            examples.append(Example(uid, ex["input"], targets))
    instruction = (data.get("task_prefix") or data.get("prefix") or "").strip() or data.get("description", "")
    return examples, metric, instruction
