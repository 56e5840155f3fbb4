"""The chunk task: runs one chunk's rows concurrently and journals finished rows (every 0.25 s).

A chunk's journal (one JSON line per finished row, last line per row wins) is the row-level store:
a crash loses only the requests in flight and the last 0.25 s of answers; a rerun or the follow-up
pass processes only the rows that have no journal line yet or that failed transiently. The Prefect
task result is a small summary; its cache key is the chunk's content digest + the job's fingerprint, so a rerun of the
same input shows finished chunks as Cached and never calls the API for them again.
"""
from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import pandas as pd
import uvloop
from prefect import task
from prefect.cache_policies import TASK_SOURCE, CacheKeyFnPolicy

from tasks.engine.outcomes import CallStats, FatalError, Partial, RowError
from tasks.engine.tables import as_text

Handler = Callable[[dict[str, Any], dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Job:
    """What to do with each row. `handler(row, clients)` returns the row's result columns (a dict,
    a `Partial` or a `Failed`); it may be a `functools.partial` of a module-level function."""

    name: str
    handler: Handler
    result_columns: tuple[str, ...]
    apis: tuple[Any, ...]  # ApiSpec, or anything with name, base_url and client(concurrency, state_dir)
    work_dir: str
    key_column: str | None = None
    version: str = "1"  # change when the same input should give a different answer (model, prompt ...)
    concurrency: int = 50  # rows in flight inside one chunk
    totals: tuple[str, ...] = ()  # numeric result columns summed in the run summary (tokens, cost_usd)
    ok_label: str = "ok"  # the output's word for an ok row (e.g. "success")
    column_types: dict[str, str] = field(default_factory=dict)  # result column -> pandas dtype ("Int64" ...)

    @functools.cached_property
    def fingerprint(self) -> str:
        """What changes the answer: the workload, its code and where it sends requests."""
        code = inspect.getsource(getattr(self.handler, "func", self.handler))
        parts = [self.name, self.version, code, *(a.base_url for a in self.apis)]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:20]

    def journal_path(self, chunk: "ChunkRef") -> Path:
        return Path(self.work_dir) / "journals" / self.fingerprint / f"{chunk.digest}.jsonl"


@dataclass(frozen=True)
class ChunkRef:
    """A staged chunk: its rows live in `staged` (a pickle written by the engine)."""

    index: int
    first_row: int
    rows: int
    digest: str
    staged: str
    duplicates: tuple[tuple[int, int], ...] = ()  # (row, row it repeats) for the key column
    source: str = ""  # the input file's name, for error messages


def read_journal(path: Path) -> dict[int, dict]:
    """Row number -> last record; a torn last line (killed mid-write) is ignored."""
    records: dict[int, dict] = {}
    if path.exists():
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                records[record["row"]] = record
    return records


def needs_work(record: dict | None) -> bool:
    return record is None or (record["status"] == "failed" and record.get("retryable", False))


def summarize(chunk: ChunkRef, records: dict[int, dict], totals: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    """Counts per status, and the sums of the `totals` result columns (for a running cost)."""
    statuses = [r["status"] for r in records.values()]
    sums = dict.fromkeys(totals, 0)
    for record in records.values():
        for name in totals:
            value = (record.get("result") or {}).get(name)
            sums[name] += value if isinstance(value, (int, float)) else 0
    return {
        "index": chunk.index, "rows": chunk.rows, "done": len(records),
        "ok": statuses.count("ok"), "partial": statuses.count("partial"), "failed": statuses.count("failed"),
        "retryable": sum(1 for r in records.values() if needs_work(r)), "totals": sums,
        **extra,
    }


def _cache_key(context, parameters) -> str:
    """The chunk's content + what changes the answer + where its journal lives."""
    job = parameters["job"]
    place = hashlib.sha256(str(Path(job.work_dir).resolve()).encode()).hexdigest()[:12]
    return f"{job.fingerprint}-{parameters['chunk'].digest}-{place}"


def _retry_unless_fatal(task, task_run, state) -> bool:
    try:
        state.result()
    except FatalError:
        return False
    except Exception:
        return True
    return True


@task(
    name="process-chunk",
    task_run_name="chunk-{chunk.index}",
    cache_policy=CacheKeyFnPolicy(cache_key_fn=_cache_key) + TASK_SOURCE,
    persist_result=True,
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=_retry_unless_fatal,
)
def process_chunk(chunk: ChunkRef, job: Job, abort_file: str) -> dict[str, Any]:
    """Process the chunk's unfinished rows; returns counts and this execution's HTTP stats."""
    started = time.monotonic()
    frame = pd.read_pickle(chunk.staged)
    journal = job.journal_path(chunk)
    journal.parent.mkdir(parents=True, exist_ok=True)
    records = read_journal(journal)
    duplicates = dict(chunk.duplicates)
    todo = [row for row in frame.to_dict("records") if needs_work(records.get(row["_row"]))]
    stats, children = CallStats(), 0.0
    if todo:
        stats, children = _run(_process_rows(todo, job, journal, duplicates, chunk.source, abort_file))
        records = read_journal(journal)
    return summarize(chunk, records, job.totals, processed=len(todo), stats=stats.__dict__,
                     seconds=round(time.monotonic() - started, 3), worker=f"{socket.gethostname()}:{os.getpid()}",
                     peak_rss_mb={"worker": peak_rss_mb(), "children": children})


def peak_rss_mb(pid: int | str = "self") -> float:
    """A live process's peak RSS (VmHWM) in MiB, 0 if unknown. Not getrusage's ru_maxrss: after fork +
    exec that starts at the parent's RSS (a Dask worker would report its nanny's, a child its worker's)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            return next(round(int(line.split()[1]) / 1024, 1) for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return 0.0


def _run(coroutine):
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:  # uvloop: less CPU per request
        return runner.run(coroutine)


def input_problem(row: dict, job: Job, duplicates: dict[int, int], source: str) -> str:
    """Why a row cannot be sent at all, or ""."""
    if row["_input_error"]:
        return row["_input_error"]
    key = job.key_column
    if key is not None:
        value = row.get(key)
        where = f"{source} row {row['_row']}, column {key}"
        if as_text(value).strip() == "":
            return f"{where}: empty"
        if row["_row"] in duplicates:
            return f"{where}: duplicate {key} {value!r} (first seen at row {duplicates[row['_row']]})"
    return ""


class JournalWriter:
    """Appends finished rows to the chunk's journal in batches (one write per `every` seconds, not
    one per row: a syscall per row costs a GIL hand-off per row). A kill loses at most the last
    `every` seconds of finished rows, which the rerun sends again."""

    def __init__(self, path: Path, every: float = 0.25):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.every, self.lines = every, []

    def add(self, record: dict) -> None:
        self.lines.append(json.dumps(record, ensure_ascii=False, default=str) + "\n")

    def flush(self) -> None:
        if self.lines:
            data, self.lines = "".join(self.lines).encode(), []
            os.write(self.fd, data)

    async def flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            self.flush()

    def close(self) -> None:
        self.flush()
        os.close(self.fd)


class AbortFlag:
    """A file that stops every chunk of the run (any process) once one meets a FatalError."""

    def __init__(self, path: str, every: float = 0.5):
        self.path, self.every, self.checked = Path(path), every, time.monotonic()

    def raise_if_set(self) -> None:
        now = time.monotonic()
        if now - self.checked >= self.every:  # a stat per row would cost a GIL hand-off per row
            self.checked = now
            if self.path.exists():
                raise FatalError(self.path.read_text() or "run aborted")

    def set(self, message: str) -> None:
        self.path.write_text(message)


async def _process_rows(rows: list[dict], job: Job, journal_path: Path, duplicates: dict[int, int],
                        source: str, abort_file: str) -> tuple[CallStats, float]:
    """Returns the clients' call stats, and the peak RSS (MiB) of child processes clients ran, if any."""
    journal, abort = JournalWriter(journal_path), AbortFlag(abort_file)
    clients = {api.name: api.client(job.concurrency, job.work_dir) for api in job.apis}

    async def one(row: dict) -> None:
        number = row["_row"]
        problem = input_problem(row, job, duplicates, source)
        if problem:
            return journal.add({"row": number, "status": "failed", "error": problem, "retryable": False})
        abort.raise_if_set()
        try:
            result = await job.handler({k: v for k, v in row.items() if not k.startswith("_")}, clients)
            if isinstance(result, Partial):
                record = {"row": number, "status": result.status, "error": result.reason, "result": result.result}
            else:
                record = {"row": number, "status": "ok", "error": "", "result": result}
        except RowError as error:
            text = f"{source} row {number}, {error}" if error.bad_input else str(error)
            record = {"row": number, "status": "failed", "error": text, "retryable": error.retryable}
        except FatalError as error:
            abort.set(str(error))
            raise
        except Exception as error:  # a bug or an unexpected answer: the row fails, the chunk goes on
            record = {"row": number, "status": "failed", "error": f"{type(error).__name__}: {error}"[:500],
                      "retryable": False}
        journal.add(record)

    queue = iter(rows)

    async def worker() -> None:  # `concurrency` workers share one iterator: each row is taken once
        for row in queue:
            await one(row)

    flusher = asyncio.create_task(journal.flush_periodically())
    try:
        for client in clients.values():
            await client.__aenter__()
        try:
            async with asyncio.TaskGroup() as group:  # tasks per worker, not per row: memory stays flat
                for _ in range(min(job.concurrency, len(rows))):
                    group.create_task(worker())
        except* FatalError as errors:
            raise errors.exceptions[0] from None
    finally:
        flusher.cancel()
        journal.close()
        total, children = CallStats(), 0.0
        for client in clients.values():
            await client.__aexit__(None, None, None)
            total.add(client.stats)
            children = max(children, getattr(client, "peak_rss_mb", 0.0))  # e.g. tasks.files.sandbox's parsers
            client.close()
    return total, children
