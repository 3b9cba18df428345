"""What the checkpoint-scoring benchmarks share: finding a family's checkpoints and writing their results."""

from __future__ import annotations

import json
from pathlib import Path

from tap.paths import write_atomic

ROOT = Path(__file__).resolve().parents[1]


def meta_checkpoints(tag: str, plan: str) -> list[Path]:
    """The run folders ``checkpoints/meta/<tag>-s<seed>``, in seed-name order; none is an error naming ``plan``,
    the file that gives the command fitting them.
    """
    ckpts = sorted((ROOT / "checkpoints" / "meta").glob(f"{tag}-s*"))
    if not ckpts:
        raise SystemExit(f"no checkpoint checkpoints/meta/{tag}-s<seed>: fit one first ({plan} gives the command).")
    return ckpts


def shown(path: Path) -> str:
    """``path`` as a recorded command should name it: relative to the repository root when inside it."""
    full = path.resolve()
    return str(full.relative_to(ROOT)) if full.is_relative_to(ROOT) else str(full)


def write_results(out: Path, payload: dict, command: str, text: str) -> None:
    """``payload`` to ``out`` (compact JSON, atomically: per-group lists over 640 groups and 15 checkpoints run
    to megabytes indented) and the report ``text`` beside it (``.md``, headed by ``command``).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, json.dumps(payload, separators=(",", ":")))
    write_atomic(out.with_suffix(".md"), f"`{command}`\n\n{text}")
