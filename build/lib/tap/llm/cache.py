"""The persistent LLM call cache: no call is paid twice, and a killed run resumes.

SQLite gives what we need from the standard library: each batch of results is written in one
transaction (atomic: a kill at any moment leaves the previous state), concurrent readers are safe
(WAL journal), and the file is self-checking (a corrupt or foreign file fails on open).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tap.errors import CacheError


def call_key(*parts: Any) -> str:
    """A stable key for one call: sha256 of its JSON-encoded parts (model, kind, prompt, settings)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class CallCache:
    """A key → JSON value store on disk (``path``), or in memory when ``path`` is None."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        target = ":memory:"
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            target = str(self.path)
        try:
            self._db = sqlite3.connect(target, timeout=60, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._db.execute("SELECT count(*) FROM calls").fetchone()
        except sqlite3.DatabaseError as err:
            raise CacheError(
                f"the LLM call cache {self.path} is unreadable ({err}). Fix: move it aside (keeping its "
                "paid calls for later inspection) or delete it; a new cache is created in its place."
            ) from err

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(dict.fromkeys(keys))
        out: dict[str, Any] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            rows = self._db.execute(
                f"SELECT key, value FROM calls WHERE key IN ({','.join('?' * len(chunk))})", chunk
            ).fetchall()
            out.update((k, json.loads(v)) for k, v in rows)
        return out

    def put_many(self, items: dict[str, Any]) -> None:
        """Write ``items`` in one transaction: all of them land, or none."""
        if not items:
            return
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "INSERT OR REPLACE INTO calls (key, value) VALUES (?, ?)",
                    [(k, json.dumps(v)) for k, v in items.items()],
                )
        except sqlite3.Error as err:
            raise CacheError(f"cannot write to the LLM call cache {self.path}: {err}") from err

    def __len__(self) -> int:
        return self._db.execute("SELECT count(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        self._db.close()
