"""A tree of files, walked lazily and staged as JSON lines (millions of files never sit in memory:
only the directories on the current path are listed), with names kept exactly (the raw bytes in
base64 next to a readable path), and a store of earlier results keyed by (path, size, mtime), so a
rerun parses only the files that changed.
"""
from __future__ import annotations

import base64
import datetime as dt
import fnmatch
import json
import os
import sqlite3
import stat
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator

from tasks.engine.stores import SqliteStore

LOOKUP_BATCH = 500  # paths per query of the known-files store (SQLite allows 999 parameters at the least)


def _matches(relative: bytes, patterns: tuple[str, ...]) -> bool:
    """Case-insensitive shell patterns: against the name, or the path below the root if the pattern has a /."""
    path = os.fsdecode(relative).lower()
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(path if "/" in p else name, p.lower()) for p in patterns)


def _listing(directory: bytes) -> list[tuple[bytes, bool]]:
    """(path, is a real directory) for each entry, sorted by name; symlinks are never followed."""
    with os.scandir(directory) as entries:
        return sorted((entry.path, entry.is_dir(follow_symlinks=False)) for entry in entries)


def walk(root: bytes, include: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> Iterator[bytes]:
    """Every entry under `root` that is not a directory, depth first in name order. `exclude` drops
    files and whole directories; `include` keeps only matching files. A directory that cannot be
    listed is yielded itself, so the output says why its files are missing."""
    if not os.path.isdir(root):  # a single file; a root that is a symlink to a directory is followed
        yield root
        return
    prefix = len(root.rstrip(b"/")) + 1
    stack = [iter(_listing(root))]
    while stack:
        path, is_dir = next(stack[-1], (None, False))
        if path is None:
            stack.pop()
        elif exclude and _matches(path[prefix:], exclude):
            continue
        elif is_dir:
            try:
                stack.append(iter(_listing(path)))
            except OSError:
                yield path
        elif not include or _matches(path[prefix:], include):
            yield path


def _iso(ns: int) -> str:
    seconds, rest = divmod(ns, 10**9)
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{rest:09d}Z"


def entry(path: bytes) -> dict[str, Any]:
    """A walked entry as a row: readable path, exact name bytes, size and mtime (of the link itself
    for a broken or looping symlink; 0 and none for an entry gone since it was listed)."""
    try:
        info = os.stat(path)
    except OSError:
        try:
            info = os.lstat(path)
        except OSError:
            info = None
    return {"path": path.decode("utf-8", "backslashreplace"), "path_b64": base64.b64encode(path).decode("ascii"),
            "size": info.st_size if info else 0, "mtime": _iso(info.st_mtime_ns) if info else None}


def stage_tree(root: str, target: Path, include: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> int:
    """Write one JSON line per walked entry to `target` as the walk goes; returns the count."""
    if not os.path.lexists(root):
        raise FileNotFoundError(f"{root}: no such file or directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(target, "w", encoding="utf-8") as handle:
        for path in walk(os.fsencode(root), tuple(include), tuple(exclude)):
            handle.write(json.dumps(entry(path), ensure_ascii=False) + "\n")
            count += 1
    return count


def entry_problem(path: bytes) -> tuple[str, str] | None:
    """(status, reason) for an entry that is not a regular file one can open, else None."""
    try:
        info = os.stat(path)
    except OSError as error:
        broken = " (a broken symlink)" if os.path.islink(path) and error.strerror == os.strerror(2) else ""
        return "failed", f"{error.strerror}{broken}"
    if stat.S_ISDIR(info.st_mode):
        if os.path.islink(path):
            return "unsupported", "a symlink to a directory (not followed)"
        try:
            os.scandir(path).close()
        except OSError as error:
            return "failed", f"cannot list the directory: {error.strerror}"
        return "unsupported", "a directory"
    if not stat.S_ISREG(info.st_mode):
        kind = {stat.S_IFIFO: "a named pipe", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
                stat.S_IFBLK: "a block device"}.get(stat.S_IFMT(info.st_mode), "a special file")
        return "unsupported", f"not a regular file: {kind}"
    return None


def changed_when(row: dict[str, Any]) -> str | None:
    """What tells a changed file with the same size: its mtime, and a bucket object's ETag too."""
    etag = row.get("etag")
    return f"{row['mtime']} {etag}" if isinstance(etag, str) and etag else row["mtime"]


class KnownFiles(SqliteStore):
    """The outcome of each file from earlier runs, keyed by its exact path, on the flow side (the
    engine's `RowHooks`): a walked entry whose size, mtime (and a bucket object's ETag) and extractor
    version are unchanged is answered from here and never sent to a worker; an outcome the limits
    caused (timeout, memory cap, the read cap of a bucket's object) counts only under the same
    limits. New outcomes are written in batches, one commit per take of finished rows, compressed at
    zlib's fastest level (half the CPU of its default for ~3 % more bytes)."""

    TABLES = ("files (path BLOB PRIMARY KEY, size INTEGER, mtime TEXT, version TEXT, limits TEXT, outcome BLOB)",)

    def __init__(self, path: str | os.PathLike, version: str, limits: str, answer: Callable[[dict], dict]):
        super().__init__(path)
        self.version, self.limits, self.answer = version, limits, answer  # answer: an outcome -> a record's fields
        self.db: sqlite3.Connection = self._connect()
        self.pending: list[tuple] = []

    def _stored(self, paths: list[bytes]) -> dict[bytes, tuple]:
        """Path -> (size, mtime, version, limits, outcome) of those stored, a few hundred per query."""
        stored: dict[bytes, tuple] = {}
        for start in range(0, len(paths), LOOKUP_BATCH):
            batch = paths[start:start + LOOKUP_BATCH]
            query = f"SELECT path, size, mtime, version, limits, outcome FROM files WHERE path IN ({','.join('?' * len(batch))})"
            stored.update((row[0], row[1:]) for row in self.db.execute(query, batch))
        return stored

    def _usable(self, stored: tuple | None, size: int, mtime: str | None) -> dict[str, Any] | None:
        if stored is None or stored[:3] != (size, mtime, self.version) or stored[3] not in ("", self.limits):
            return None
        return json.loads(zlib.decompress(stored[4]))

    def prepare(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        send, known = [], []
        paths = [base64.b64decode(row["path_b64"]) for row in rows]
        stored = self._stored(paths)
        for row, path in zip(rows, paths):
            outcome = self._usable(stored.get(path), int(row["size"]), changed_when(row))
            if outcome is None:
                send.append(row)
            else:
                known.append({"row": row["_row"], **self.answer(outcome)})
        return send, known

    def finished(self, row: dict[str, Any], record: dict[str, Any]) -> None:
        result = record.get("result") or {}
        if "_limits" in result:  # a parse, not a problem with the entry itself
            outcome = {**{k: v for k, v in result.items() if k != "_limits"}, "status": record["status"],
                       "error": record["error"]}
            self.pending.append((base64.b64decode(row["path_b64"]), int(row["size"]), changed_when(row), self.version,
                                 result["_limits"], zlib.compress(json.dumps(outcome).encode(), 1)))

    def flush(self) -> None:
        if self.pending:
            with self.db:
                self.db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)", self.pending)
            self.pending = []
