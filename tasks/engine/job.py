"""The seam between a workload and the chunk engine: what to do with each row (`Job`), the
resources its handler uses (`Resource`: an API, a parser sandbox), the flow-side hooks that own
stores (`RowHooks`), the run's options and a row's record."""
from __future__ import annotations

import enum
import functools
import hashlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Protocol

from tasks.engine import storage
from tasks.engine.outcomes import CallStats


class RowStatus(str, enum.Enum):
    """A row's outcome in the journal and the output (workloads may add their own words, e.g. file
    metadata's `unsupported` and `timeout`, through `Partial.status`)."""

    OK = "ok"
    PARTIAL = "partial"
    FAILED = "failed"


class Limiter(Protocol):
    """A shared rate budget: `await acquire(cost)` before a request, `pause(seconds)` after a 429."""

    async def acquire(self, cost: float = 1.0) -> None: ...

    def pause(self, seconds: float) -> None: ...

    def close(self) -> None: ...


class Limits(Protocol):
    """Where rate budgets live: a file on one machine, the Dask scheduler on a cluster."""

    def limiter(self, key: str, per_second: float, window: float = 1.0, burst: float = 1.0) -> Limiter: ...


class Client(Protocol):
    """What a resource gives each chunk: an async context manager with call figures."""

    stats: CallStats

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc: Any) -> None: ...

    def close(self) -> None: ...


class Resource(Protocol):
    """Anything a handler uses through `clients[name]`: `fingerprint` says what changes its answers
    (URL, model, limits); `client()` runs on the worker, once per chunk."""

    name: str

    @property
    def fingerprint(self) -> str: ...

    def client(self, concurrency: int, limits: Limits) -> Client: ...


Record = dict[str, Any]  # {"row", "status", "error", "result", "retryable"}: one journal line


class RowHooks(Protocol):
    """Flow-side work around the rows a chunk sends (stores that must stay consistent live here,
    never on a worker): `prepare` answers rows known from an earlier run (returned as records) and
    may add fields to the others; `finished` sees every record as it arrives, with its row; `flush`
    ends each batch of them (one commit per batch, not per row)."""

    def prepare(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Record]]: ...

    def finished(self, row: dict[str, Any], record: Record) -> None: ...

    def flush(self) -> None: ...


Handler = Callable[[dict[str, Any], dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Job:
    """What to do with each row. `handler(row, clients)` returns the row's result columns (a dict,
    a `Partial` or a `Failed`); it may be a `functools.partial` of a module-level function."""

    name: str
    handler: Handler
    result_columns: tuple[str, ...]
    resources: tuple[Any, ...]  # Resource
    work_dir: str  # the flow side's: journals, staged chunks, stores (never read by a worker); may be a URL
    key_column: str | None = None
    version: str = "1"  # change when the same input should give a different answer (model, prompt ...)
    concurrency: int = 50  # rows in flight inside one chunk
    totals: tuple[str, ...] = ()  # numeric result columns summed in the run summary (tokens, cost_usd)
    ok_label: str = "ok"  # the output's word for an ok row (e.g. "success")
    column_types: dict[str, str] = field(default_factory=dict)  # result column -> pandas dtype ("Int64" ...)
    hooks: Any = None  # RowHooks, run on the flow side
    worker_check: Callable[[], str] | None = None  # run on every worker first: "" or why it cannot work

    @functools.cached_property
    def fingerprint(self) -> str:
        """What changes the answer: the workload, its code and its resources."""
        code = inspect.getsource(getattr(self.handler, "func", self.handler))
        parts = [self.name, self.version, code, *(r.fingerprint for r in self.resources)]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:20]

    @property
    def journal_dir(self) -> Path | str:
        """Where the journals live: under the work dir, a folder or a URL (tasks/engine/storage.py)."""
        if storage.is_url(self.work_dir):
            return storage.join(self.work_dir, "journals", self.fingerprint)
        return storage.local(self.work_dir) / "journals" / self.fingerprint

    @property
    def local_dir(self) -> Path:
        """What needs a local disk (staged chunks, rate-limit slots, SQLite stores): the work dir, or
        for a work dir at a URL its local folder."""
        return storage.local_dir(self.work_dir)


@dataclass(frozen=True)
class RunOptions:
    """How a run is spread (chunk size, runner, chunks at once, rows in flight, passes) and when it
    fails as a whole (tasks/engine/brake.py)."""

    chunk_size: int = 200
    runner: str = "thread"  # thread | dask | tcp://scheduler:8786
    workers: int | None = None  # chunks at once (default: the runner's threads)
    total_concurrency: int | None = None  # rows in flight over the whole run, split between chunks
    limit: int | None = None  # the first N rows only
    required: tuple[str, ...] = ()  # columns the input must have
    sheet: str | None = None
    encoding: str = "utf-8-sig"
    retry_passes: int = 1  # follow-up passes for rows that failed transiently
    brake_rows: int = 100  # the run stops when its first N rows sent all fail for good (fewer rows: all); 0: never
    max_failed_fraction: float | None = 0.5  # more failed rows than this: the run fails after writing its output
