"""Small SQLite files under the work dir that any number of threads and processes share (WAL mode):
lookup caches, the outbox, batch ids, known files, extracted files.

Opening is safe however many open the same fresh file at once: `shared(path)` builds one instance per
path and process under a process-wide lock, and every setup statement (journal mode, tables) is
retried while another connection holds the file (`database is locked`, which SQLite answers at once
to a journal-mode change, whatever the busy timeout). Reads and writes go through `read` / `write`,
which retry the same way (writes take the write lock up front: BEGIN IMMEDIATE). A store that still
fails raises `MachineryError`: our failure, never the row's.
"""
from __future__ import annotations

import random
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Callable, TypeVar

from tasks.engine.outcomes import MachineryError

T = TypeVar("T")
BUSY_TIMEOUT = 60.0  # seconds SQLite itself waits for a lock, per statement
PATIENCE = 120.0  # seconds our retries go on for a store that stays locked, then MachineryError
_SHARED_LOCK = threading.Lock()
_SHARED: dict[tuple[type, str], "SqliteStore"] = {}


def is_busy(error: sqlite3.Error) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED: another connection holds the file; trying again will do."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return isinstance(error, sqlite3.OperationalError) and ("locked" in str(error) or "busy" in str(error))


class SqliteStore:
    """One SQLite file; subclasses give their `TABLES`. `shared(path)` is one instance per path and
    process (safe to call from any thread at once)."""

    TABLES: tuple[str, ...] = ()

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._retrying(self._set_up)

    @classmethod
    def shared(cls, path: str):
        key = (cls, str(path))
        with _SHARED_LOCK:  # built once, however many threads ask at once
            store = _SHARED.get(key)
            if store is None:
                store = _SHARED[key] = cls(path)
        return store

    def read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(db)` on a fresh connection, retried while the file is locked."""
        def attempt() -> T:
            with closing(self._connect()) as db:
                return work(db)

        return self._retrying(attempt)

    def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(db)` in one transaction that holds the write lock from its start, retried while
        the file is locked."""
        def attempt() -> T:
            with closing(self._connect()) as db:
                db.execute("BEGIN IMMEDIATE")
                answer = work(db)
                db.commit()
                return answer

        return self._retrying(attempt)

    def _set_up(self) -> None:
        with closing(self._connect()) as db:
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            for table in self.TABLES:
                db.execute(f"CREATE TABLE IF NOT EXISTS {table}")

    def _retrying(self, attempt: Callable[[], T]) -> T:
        deadline, tries = time.monotonic() + PATIENCE, 0
        while True:
            tries += 1
            try:
                return attempt()
            except sqlite3.Error as error:
                if not is_busy(error) or time.monotonic() >= deadline:
                    raise MachineryError(f"store {self.path}: {type(error).__name__}: {error}") from error
            time.sleep(random.uniform(0, min(1.0, 0.01 * 2 ** tries)))

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=BUSY_TIMEOUT)
