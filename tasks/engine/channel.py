"""How finished rows travel from a chunk to the flow, which owns the journal.

A chunk's `Link` sends its finished rows in batches (every 0.25 s), learns which of its rows an
earlier try of the same chunk already finished, gets the rate budgets (`limits`), and hears when
it must stop (another chunk met a fatal error; the flow run it belongs to is gone). The flow's
`Inbox` takes the rows as they come and hands them to the journal.

- `LocalChannel` (thread runner): everything stays in this process; budgets are slot files.
- `ClusterChannel` (Dask runners): through the scheduler's `Coordinator` (tasks/engine/cluster.py),
  so workers need no disk in common with the flow. That module (and Dask's) is imported only there:
  a thread-runner run does without it.
"""
from __future__ import annotations

import collections
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from tasks.engine.outcomes import CallStats, Stopped
from tasks.engine.ratelimit import FileLimits


@dataclass
class Arrivals:
    """What chunks sent since the last take: journal lines per chunk, and their call figures."""

    lines: dict[str, list[str]]
    calls: CallStats


class _LocalRun:
    """The in-process state of one run on the thread runner."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: dict[str, list[str]] = collections.defaultdict(list)
        self.done: dict[str, set[int]] = collections.defaultdict(set)
        self.calls = CallStats()
        self.abort = ""


@dataclass(frozen=True)
class LocalChannel:
    """Chunks and flow in one process (the thread runner)."""

    state_dir: str  # where the slot files of the rate limits live
    run: _LocalRun = field(default_factory=_LocalRun, compare=False, repr=False)

    def link(self, chunk: str) -> "LocalLink":
        return LocalLink(self, chunk)

    def inbox(self) -> "LocalChannel":
        return self

    def take(self) -> Arrivals:
        with self.run.lock:
            taken = Arrivals(dict(self.run.pending), self.run.calls)
            self.run.pending, self.run.calls = collections.defaultdict(list), CallStats()
        return taken

    def forget(self, chunk: str) -> None:
        with self.run.lock:
            self.run.done.pop(chunk, None)

    def abort(self, message: str) -> None:
        self.run.abort = message

    def close(self) -> None:
        pass


class LocalLink:
    def __init__(self, channel: LocalChannel, chunk: str):
        self.channel, self.chunk = channel, chunk
        self.limits = FileLimits(channel.state_dir)

    def done_rows(self) -> set[int]:
        with self.channel.run.lock:
            return set(self.channel.run.done.get(self.chunk, ()))

    async def send(self, lines: list[str], rows: list[int], calls: dict[str, int]) -> None:
        state = self.channel.run
        with state.lock:
            state.pending[self.chunk].extend(lines)
            state.done[self.chunk].update(rows)
            state.calls.add(calls)
        if state.abort:
            raise Stopped(state.abort)

    def abort(self, message: str) -> None:
        self.channel.abort(message)


@dataclass(frozen=True)
class ClusterChannel:
    """Chunks on Dask workers: rows, budgets and stop signals through the scheduler. `run` names
    the job (a rerun of the same job takes what a killed one left); `generation` this flow run."""

    run: str
    generation: str = field(default_factory=lambda: uuid.uuid4().hex)

    def link(self, chunk: str) -> "ClusterLink":
        return ClusterLink(self, chunk)

    def inbox(self, client: Any) -> "ClusterInbox":
        return ClusterInbox(self, client)


class ClusterLink:
    def __init__(self, channel: ClusterChannel, chunk: str):
        from distributed import get_worker

        from tasks.engine.cluster import ClusterLimits

        self.channel, self.chunk = channel, chunk
        self.limits = ClusterLimits()
        worker = get_worker()
        self._worker, self._key = worker, worker.get_current_task()

    def done_rows(self) -> set[int]:
        from tasks.engine.cluster import call_scheduler_sync

        return set(call_scheduler_sync("done_rows", run=self.channel.run, chunk=self.chunk))

    async def send(self, lines: list[str], rows: list[int], calls: dict[str, int]) -> None:
        from tasks.engine.cluster import call_scheduler

        stop = await call_scheduler("push", run=self.channel.run, generation=self.channel.generation,
                                    chunk=self.chunk, lines=lines, rows=rows, calls=calls)
        task = self._worker.state.tasks.get(self._key)
        if not stop and (task is None or task.state in ("cancelled", "released", "forgotten")):
            stop = "the flow run that sent this chunk is gone"
        if stop:
            raise Stopped(stop)

    def abort(self, message: str) -> None:
        from tasks.engine.cluster import call_scheduler_sync

        call_scheduler_sync("abort", run=self.channel.run, message=message)


class ClusterInbox:
    """The flow's end of a `ClusterChannel` (through its Dask client)."""

    def __init__(self, channel: ClusterChannel, client: Any):
        from tasks.engine.cluster import PLUGIN_NAME, Coordinator

        self.channel, self.client = channel, client
        client.register_plugin(Coordinator(), name=PLUGIN_NAME)
        self._call("begin", generation=channel.generation)

    def _call(self, op: str, **arguments: Any) -> Any:
        return self.client.sync(getattr(self.client.scheduler, f"batchflows_{op}"), run=self.channel.run, **arguments)

    def take(self) -> Arrivals:
        taken = self._call("take")
        return Arrivals(taken["lines"], CallStats(**taken["calls"]))

    def forget(self, chunk: str) -> None:
        self._call("forget", chunk=chunk)

    def abort(self, message: str) -> None:
        self._call("abort", message=message)

    def close(self) -> None:
        self._call("end")
