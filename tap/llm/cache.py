"""The persistent LLM call cache: no call is paid twice, and a killed run resumes.

SQLite gives what we need from the standard library: each batch of results is written in one
transaction (atomic: a kill at any moment leaves the previous state), concurrent readers are safe
(WAL journal), and a file SQLite cannot read fails with a clear error (on open or on first use).
SQLite does not notice a changed byte inside a stored value, so every value carries a checksum of
its key and content (``check``): a value that fails it, or is no longer valid JSON, is treated as
missing (``damaged`` counts them; the caller pays the call again and says so). Rows written before
checksums existed have none and are read as they are.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tap.errors import CacheError


def call_key(*parts: Any) -> str:
    """A stable key for one call: sha256 of its JSON-encoded parts (model, kind, prompt, settings)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def checksum(key: str, value: str) -> str:
    """The check stored beside a value: sha256 of its key and its JSON text, shortened."""
    return hashlib.sha256(f"{key}\0{value}".encode()).hexdigest()[:16]


class CallCache:
    """A key → JSON value store on disk (``path``), or in memory when ``path`` is None.

    ``damaged`` counts stored values that failed their checksum or JSON parse and were served as missing.
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self.damaged = 0
        target = ":memory:"
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise self._unwritable(err) from err
            if not self.path.exists() and not os.access(self.path.parent, os.W_OK):
                raise self._unwritable(PermissionError(f"{self.path.parent} is not writable"))
            target = str(self.path)
        try:
            self._db = sqlite3.connect(target, timeout=60, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS calls "
                             "(key TEXT PRIMARY KEY, value TEXT NOT NULL, check_ TEXT)")
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(calls)")}
            if "check_" not in columns:  # a cache written before checksums: its rows keep no check
                self._db.execute("ALTER TABLE calls ADD COLUMN check_ TEXT")
            self._db.execute("SELECT count(*) FROM calls").fetchone()
        except sqlite3.DatabaseError as err:
            if self.path is not None and not self.path.exists():
                raise self._unwritable(err) from err
            raise self._unreadable(err) from err

    def _unreadable(self, err: Exception) -> CacheError:
        return CacheError(
            f"the LLM call cache {self.path} is unreadable ({err}). Fix: move it aside (keeping its "
            "paid calls for later inspection) or delete it; a new cache is created in its place."
        )

    def _unwritable(self, err: Exception) -> CacheError:
        return CacheError(
            f"cannot create the LLM call cache {self.path}: the folder {self.path.parent if self.path else ''} "
            f"is not writable ({err}). Fix: pass --cache with a path in a writable folder, or set $TAP_CACHE."
        )

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The stored values of ``keys`` that are present and intact (damaged ones count in ``damaged``)."""
        keys = list(dict.fromkeys(keys))
        out: dict[str, Any] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            try:
                rows = self._db.execute(
                    f"SELECT key, value, check_ FROM calls WHERE key IN ({','.join('?' * len(chunk))})", chunk
                ).fetchall()
            except sqlite3.DatabaseError as err:
                raise self._unreadable(err) from err
            for k, v, check in rows:
                if check is not None and check != checksum(k, v):
                    self.damaged += 1
                    continue
                try:
                    out[k] = json.loads(v)
                except json.JSONDecodeError:
                    self.damaged += 1
        return out

    def put_many(self, items: dict[str, Any]) -> None:
        """Write ``items`` in one transaction: all of them land, or none."""
        if not items:
            return
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                rows = [(k, json.dumps(v)) for k, v in items.items()]
                self._db.executemany("INSERT OR REPLACE INTO calls (key, value, check_) VALUES (?, ?, ?)",
                                     [(k, v, checksum(k, v)) for k, v in rows])
        except sqlite3.Error as err:
            raise CacheError(f"cannot write to the LLM call cache {self.path}: {err}") from err

    def __len__(self) -> int:
        try:
            return self._db.execute("SELECT count(*) FROM calls").fetchone()[0]
        except sqlite3.DatabaseError as err:
            raise self._unreadable(err) from err

    def close(self) -> None:
        self._db.close()
