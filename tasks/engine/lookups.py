"""Paid lookups done once per distinct key and kept: web research by company domain, geocoding by
normalised address. `cached_lookup` runs the chunk engine over the keys the cache lacks and stores
the answers; a rerun, or another file with the same keys, costs no request.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from tasks.engine.job import Job, RunOptions
from tasks.engine.run import run_job_on_frame
from tasks.engine.stores import SqliteStore


class LookupCache(SqliteStore):
    """key -> answer (a JSON object), with the last failure per key. Answers older than
    `max_age_days` count as missing."""

    TABLES = ("answers (key TEXT PRIMARY KEY, answer TEXT, at REAL)",
              "failures (key TEXT PRIMARY KEY, error TEXT, at REAL)")

    def __init__(self, path: str | Path, max_age_days: float | None = None):
        super().__init__(path)
        self.max_age = max_age_days * 86400 if max_age_days else None

    def get(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        keys = list(dict.fromkeys(keys))
        oldest = time.time() - self.max_age if self.max_age else 0.0

        def select(db) -> dict[str, dict[str, Any]]:
            found = {}
            for start in range(0, len(keys), 500):
                batch = keys[start:start + 500]
                rows = db.execute(f"SELECT key, answer FROM answers WHERE at >= ? AND key IN "
                                  f"({','.join('?' * len(batch))})", [oldest, *batch])
                found.update({key: json.loads(answer) for key, answer in rows})
            return found

        return self.read(select)

    def failure(self, key: str) -> str | None:
        row = self.read(lambda db: db.execute("SELECT error FROM failures WHERE key = ?", (key,)).fetchone())
        return row[0] if row else None

    def put(self, answers: dict[str, dict[str, Any]], failures: dict[str, str]) -> None:
        now = time.time()

        def insert(db) -> None:
            db.executemany("INSERT OR REPLACE INTO answers VALUES (?, ?, ?)",
                           [(k, json.dumps(v, default=str), now) for k, v in answers.items()])
            db.executemany("DELETE FROM failures WHERE key = ?", [(k,) for k in answers])
            db.executemany("INSERT OR REPLACE INTO failures VALUES (?, ?, ?)", [(k, e, now) for k, e in failures.items()])

        self.write(insert)


class AttachAnswers:
    """`RowHooks` that give each row, on the flow side, its key's cached answer as `_answer` (None
    when the lookup failed, with the reason as `_failure`): workers never open the cache."""

    def __init__(self, cache: LookupCache, key_of: Callable[[dict[str, Any]], str]):
        self.cache, self.key_of = cache, key_of

    def prepare(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        keys = [self.key_of(row) for row in rows]
        found = self.cache.get([key for key in keys if key])
        return [{**row, "_answer": found.get(key),
                 "_failure": "" if key in found or not key else self.cache.failure(key) or "not done"}
                for row, key in zip(rows, keys)], []

    def finished(self, row: dict[str, Any], record: dict[str, Any]) -> None:
        pass

    def flush(self) -> None:
        pass


class RememberAnswers:
    """`RowHooks` for paid work done once per key across runs: a row whose key has an answer in the
    cache is answered from it on the flow side (never sent); an `ok` row's result is stored."""

    def __init__(self, cache: LookupCache, key_of: Callable[[dict[str, Any]], str]):
        self.cache, self.key_of, self.pending = cache, key_of, {}

    def prepare(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        found = self.cache.get([self.key_of(row) for row in rows])
        send = [row for row in rows if self.key_of(row) not in found]
        known = [{"row": row["_row"], "status": "ok", "error": "", "result": found[self.key_of(row)]}
                 for row in rows if self.key_of(row) in found]
        return send, known

    def finished(self, row: dict[str, Any], record: dict[str, Any]) -> None:
        if record["status"] == "ok":
            self.pending[self.key_of(row)] = record["result"]

    def flush(self) -> None:
        if self.pending:
            self.cache.put(self.pending, {})
            self.pending = {}


def cached_lookup(job: Job, items: pd.DataFrame, cache: LookupCache, options: RunOptions) -> dict[str, Any]:
    """Look up every row of `items` (a `key` column + what the job's handler needs) that the cache
    lacks, with `job` on the chunk engine; store the answers. Returns the run's figures."""
    keys = items["key"].tolist()
    missing = items[~items["key"].isin(cache.get(keys).keys())]
    figures: dict[str, Any] = {"keys": len(keys), "cache_hits": len(keys) - len(missing), "looked_up": 0,
                               "lookups_failed": 0, "requests": 0, "http_429": 0, "seconds": 0.0}
    if missing.empty:
        return figures
    run, out = run_job_on_frame(job, missing, options)
    ok = out["status"] == "ok"
    answers = {record["key"]: {name: record.get(name) for name in job.result_columns}
               for record in out[ok].to_dict("records")}
    cache.put(answers, dict(zip(out.loc[~ok, "key"], out.loc[~ok, "error"])))
    figures.update(looked_up=len(answers), lookups_failed=int((~ok).sum()), requests=run["requests"],
                   http_429=run["http_429"], seconds=run["wall_seconds"])
    return figures
