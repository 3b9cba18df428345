"""A user's own task from a JSONL or CSV file, read through HF ``datasets``.

Columns: ``input`` (required) and either ``target`` (one answer, or a JSON list / ``|``-separated
answers) for exact match, or ``choices`` (JSON list or ``|``-separated) with ``answer`` (the
correct choice's text or index) for multiple choice.
"""

from __future__ import annotations

import json
from pathlib import Path

from tap.errors import TaskError
from tap.tasks.schema import Example, Metric


def _as_list(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    text = str(value).strip()
    if text.startswith("["):
        try:
            return [str(v) for v in json.loads(text)]
        except json.JSONDecodeError:
            pass
    return [t.strip() for t in text.split("|")] if "|" in text else [text]


def _precheck(path: Path, kind: str) -> None:
    """Fail before any parsing library does, naming the line: non-UTF-8 bytes, an empty file, a JSONL line
    that is not a JSON object, a CSV with a header and no rows.
    """
    rows = 0
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise TaskError(f"{path}, line {number} is not UTF-8 text (byte {raw[err.start]:#04x} at column "
                                f"{err.start + 1}). Fix: save the file as UTF-8.") from None
            if not line.strip():
                continue
            rows += 1
            if kind == "json" and path.suffix.lower() == ".jsonl":
                try:
                    obj = json.loads(line.rstrip("\r\n"))
                except json.JSONDecodeError as err:
                    raise TaskError(f"{path}, line {number} is not valid JSON ({err.msg} at column {err.colno}). "
                                    "Fix: one JSON object per line, e.g. {\"input\": \"...\", \"target\": \"...\"}."
                                    ) from None
                if not isinstance(obj, dict):
                    raise TaskError(f"{path}, line {number} is a JSON {type(obj).__name__}, not an object. Fix: one "
                                    "JSON object per line, e.g. {\"input\": \"...\", \"target\": \"...\"}.")
    if rows == 0:
        raise TaskError(f"task file {path} is empty. Fix: give at least 3 rows (one per split), each with an "
                        "'input' and a 'target' (or 'choices' and 'answer').")
    if kind == "csv" and rows == 1:
        raise TaskError(f"task file {path} has a header but no rows. Fix: add at least 3 rows under the header.")


def load_user_task(path: str | Path) -> tuple[list[Example], Metric, str]:
    """Examples and metric from a ``.jsonl``/``.json``/``.csv`` file."""
    import datasets

    path = Path(path)
    if not path.exists():
        raise TaskError(f"task file {path} does not exist; give a path to a .jsonl or .csv file.")
    kind = {".jsonl": "json", ".json": "json", ".csv": "csv"}.get(path.suffix.lower())
    if kind is None:
        raise TaskError(f"task file {path} must end in .jsonl, .json or .csv (got {path.suffix!r}).")
    _precheck(path, kind)
    try:
        # CSV cells stay text ("007" is not 7, "NA" is not missing)
        extra: dict = {}
        if kind == "csv":
            import csv

            with path.open(newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), [])
            extra = {"features": datasets.Features({c: datasets.Value("string") for c in header}),
                     "keep_default_na": False, "na_filter": False}
        ds = datasets.load_dataset(kind, data_files=str(path), split="train", **extra)
    except Exception as err:  # datasets raises many types for malformed files
        raise TaskError(
            f"cannot read task file {path}: {type(err).__name__}: {err}. Fix: one JSON object per line "
            "(JSONL) or a CSV header, with an 'input' column and 'target' or 'choices'+'answer'."
        ) from err
    cols = set(ds.column_names)
    if "input" not in cols or not ({"target"} <= cols or {"choices", "answer"} <= cols):
        raise TaskError(
            f"task file {path} has columns {sorted(cols)}; it needs 'input' and either 'target' "
            "(exact match) or 'choices' and 'answer' (multiple choice)."
        )
    metric: Metric = "multiple_choice" if "choices" in cols else "exact_match"
    examples = []
    for uid, row in enumerate(ds):
        where = f"{path}, row {uid + 1}"
        text = row["input"]
        if text is None or not str(text).strip():
            raise TaskError(f"{where}: 'input' is empty; every row needs an input.")
        if metric == "exact_match":
            targets = _as_list(row["target"])
            if not targets or not targets[0]:
                raise TaskError(f"{where}: 'target' is empty; every row needs an answer.")
            examples.append(Example(uid, str(text), tuple(targets)))
        else:
            choices = _as_list(row["choices"])
            answer = str(row["answer"]).strip()
            if answer.isdigit() and answer not in choices:
                idx = int(answer)
            elif answer in choices:
                idx = choices.index(answer)
            else:
                raise TaskError(f"{where}: answer {answer!r} is neither one of the choices {choices} nor an index.")
            if not 0 <= idx < len(choices) or len(choices) < 2:
                raise TaskError(f"{where}: needs at least 2 choices and a valid answer index (got {idx}).")
            scores = tuple(1.0 if i == idx else 0.0 for i in range(len(choices)))
            examples.append(Example(uid, str(text), (choices[idx],), tuple(choices), scores))
    return examples, metric, ""
