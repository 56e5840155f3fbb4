"""The chunk task: runs one chunk's rows concurrently on a worker and sends each finished row to
the flow through the run's channel (in batches, every 0.25 s).

The rows travel with the task; nothing is read from or written to a disk the flow shares. A kill
loses only the requests in flight and the last 0.25 s of answers; a retry of the chunk (on any
worker) skips the rows the channel already got from an earlier try.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import uvloop
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.engine.job import Job, Record, RowStatus
from tasks.engine.outcomes import (
    FIRST_CALLS,
    CallStats,
    FatalError,
    GaveUp,
    MachineryError,
    Partial,
    RowError,
    Stopped,
)

FLUSH_SECONDS = 0.25
ENGINE_COLUMNS = ("_row", "_input_error", "_attempts", "_passes")  # not for the handler; `_retry` is


@dataclass(frozen=True)
class ChunkWork:
    """One chunk's rows to process (the input's columns + `_row`), sent to the worker with the task."""

    index: int
    digest: str  # the chunk's content digest: its journal's name
    rows: pd.DataFrame  # `_attempts` and `_passes`: what earlier tries of a row that gave up cost
    source: str = ""  # the input file's name, for error messages
    first: bool = False  # sent before the run saw any row succeed (see outcomes.FIRST_CALLS)


@dataclass
class ChunkReport:
    """What one execution of a chunk did (its rows' records went through the channel)."""

    index: int
    processed: int
    stats: CallStats
    worker: str
    seconds: float
    peak_rss_mb: dict[str, float] = field(default_factory=dict)


def _retry_unless_fatal(task, task_run, state) -> bool:
    try:
        state.result()
    except FatalError:
        return False
    except Exception:
        return True
    return True


@task(name="process-chunk", task_run_name="chunk-{chunk.index}", cache_policy=NO_CACHE, persist_result=False,
      retries=2, retry_delay_seconds=2, retry_condition_fn=_retry_unless_fatal)
def process_chunk(chunk: ChunkWork, job: Job, channel: Any) -> ChunkReport:
    """Process the chunk's rows that no earlier try of it finished."""
    started = time.monotonic()
    link = channel.link(chunk.digest)
    done = link.done_rows()
    retry = bool(done) or _tries() > 1  # an earlier try may have sent rows it could not report
    rows = [{**row, "_retry": retry} for row in chunk.rows.to_dict("records") if row["_row"] not in done]
    stats, children = CallStats(), 0.0
    if rows:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:  # uvloop: less CPU per request
            stats, children = runner.run(_process_rows(rows, job, link, chunk.source, chunk.first))
    return ChunkReport(chunk.index, len(rows), stats, f"{socket.gethostname()}:{os.getpid()}",
                       round(time.monotonic() - started, 3), {"worker": peak_rss_mb(), "children": children})


def _tries() -> int:
    from prefect.context import TaskRunContext

    context = TaskRunContext.get()
    return context.task_run.run_count if context else 1


def peak_rss_mb(pid: int | str = "self") -> float:
    """A live process's peak RSS (VmHWM) in MiB, 0 if unknown. Not getrusage's ru_maxrss: after fork +
    exec that starts at the parent's RSS (a Dask worker would report its nanny's, a child its worker's)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            return next(round(int(line.split()[1]) / 1024, 1) for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return 0.0


class RecordBuffer:
    """Finished rows, sent to the flow in batches with the clients' call figures since the last
    send (for the run's timeline of 429s and retries): one send per FLUSH_SECONDS, not one per row."""

    def __init__(self, link: Any, clients: dict[str, Any]):
        self.link, self.clients, self.lines, self.rows, self.sent = link, clients, [], [], CallStats()

    def add(self, record: Record) -> None:
        self.lines.append(json.dumps(record, ensure_ascii=False, default=str))
        self.rows.append(record["row"])

    async def flush(self) -> None:
        calls = CallStats()
        for client in self.clients.values():
            calls.add(client.stats)
        news = calls.since(self.sent)
        if self.lines or news:
            (lines, self.lines), (rows, self.rows), self.sent = (self.lines, []), (self.rows, []), calls
            await self.link.send(lines, rows, news.__dict__)

    async def flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            await self.flush()


def record_of(number: int, outcome: Any) -> Record:
    """A handler's answer (a dict, `Partial` or `Failed`) as the row's journal record."""
    if isinstance(outcome, Partial):
        return {"row": number, "status": outcome.status, "error": outcome.reason, "result": outcome.result}
    return {"row": number, "status": RowStatus.OK.value, "error": "", "result": outcome}


def failure_record(number: int, error: RowError, row: dict, source: str) -> Record:
    """A failed row's journal record; a call that gave up counts the attempts of the row's earlier tries."""
    record = {"row": number, "status": RowStatus.FAILED.value, "retryable": error.retryable}
    if error.bad_input:
        record.update(error=f"{source} row {number}, {error}", bad_input=True)
    elif isinstance(error, GaveUp):
        error = error.after(int(row.get("_attempts") or 0), int(row.get("_passes") or 0))
        record.update(error=str(error), attempts=error.attempts, passes=error.passes)
    else:
        record["error"] = str(error)
    return record


async def _process_rows(rows: list[dict], job: Job, link: Any, source: str,
                        first: bool = False) -> tuple[CallStats, float]:
    """Returns the clients' call stats, and the peak RSS (MiB) of child processes clients ran, if any.
    `first`: no row of the run has succeeded yet (an unreachable API is then fatal)."""
    FIRST_CALLS.set(first)
    clients = {resource.name: resource.client(job.concurrency, link.limits) for resource in job.resources}
    buffer = RecordBuffer(link, clients)

    async def one(row: dict) -> None:
        number = row["_row"]
        try:
            record = record_of(number, await job.handler({k: v for k, v in row.items() if k not in ENGINE_COLUMNS},
                                                         clients))
        except RowError as error:
            record = failure_record(number, error, row, source)
        except (FatalError, MachineryError):
            raise
        except Exception as error:  # an unexpected answer: the row fails, the chunk goes on
            record = {"row": number, "status": RowStatus.FAILED.value,
                      "error": f"{type(error).__name__}: {error}"[:500], "retryable": False}
        buffer.add(record)

    queue = iter(rows)

    async def worker() -> None:  # `concurrency` workers share one iterator: each row is taken once
        for row in queue:
            await one(row)

    entered = []
    try:
        for client in clients.values():
            await client.__aenter__()
            entered.append(client)
        try:
            async with asyncio.TaskGroup() as group:  # tasks per worker, not per row: memory stays flat
                flusher = group.create_task(buffer.flush_periodically())
                await asyncio.gather(*(group.create_task(worker()) for _ in range(min(job.concurrency, len(rows)))))
                flusher.cancel()
        except* FatalError as errors:
            error = errors.exceptions[0]
            if not isinstance(error, Stopped):  # the first to meet it stops every chunk of the run
                link.abort(str(error))
            raise error from None
        except* MachineryError as errors:
            raise errors.exceptions[0] from None
    finally:
        try:
            await buffer.flush()  # what finished is paid for: the flow keeps it even when the chunk stops
        except FatalError:
            pass
        total, children = CallStats(), 0.0
        for client in entered:
            await client.__aexit__(None, None, None)
            total.add(client.stats)
            children = max(children, getattr(client, "peak_rss_mb", 0.0))  # e.g. the parser sandbox's
        for client in clients.values():
            client.close()
    return total, children
