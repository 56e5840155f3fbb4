"""What a Dask cluster's chunks share, kept where every worker can reach it: the scheduler.

`Coordinator` is a scheduler plugin (registered by the flow when a Dask runner starts) with:
- **rate budgets**: a GCRA slot book per API. A worker asks for slots and gets *relative* waits
  (seconds from when the scheduler answered), so clock skew between machines does not matter; at
  high rates it takes a batch of slots per call. A 429's Retry-After pushes the book forward, so
  every worker pauses.
- **row records in transit**: chunks push their finished rows every 0.25 s; the flow takes them
  and writes its journal. What the flow has not taken yet survives the flow process (a rerun takes
  it), and the rows a chunk finished are known to a retry of that chunk on another worker.
- **stop signals**: an abort message for the run (a fatal error met by one chunk), and a
  generation, so chunks of a killed flow run stop when a rerun begins.

The scheduler and workers need the project installed (as they need it to run the tasks).
"""
from __future__ import annotations

import asyncio
import collections
import heapq
import math
import threading
import time
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

from tasks.engine.ratelimit import _MAX_RESLOTS, default_headroom

PLUGIN_NAME = "batchflows-coordinator"
RECORD_TTL = 7 * 86400.0  # records of a run nobody came back for are dropped after a week


class _Run:
    def __init__(self) -> None:
        self.generation, self.abort, self.touched = "", "", time.monotonic()
        self.pending: dict[str, list[str]] = collections.defaultdict(list)  # chunk -> journal lines
        self.done: dict[str, set[int]] = collections.defaultdict(set)  # chunk -> rows finished
        self.calls: collections.Counter = collections.Counter()  # requests, 429s, retries ... since the last take


class Coordinator(SchedulerPlugin):
    """The scheduler side (handlers `batchflows_*`, called by workers and by the flow)."""

    name = PLUGIN_NAME
    idempotent = True  # registering again keeps the running one (and its slot books, records)

    def __init__(self) -> None:
        self.books: dict[str, float] = {}  # limiter key -> next free slot (scheduler's monotonic clock)
        self.runs: dict[str, _Run] = {}

    async def start(self, scheduler: Any) -> None:
        for op in ("reserve", "pause", "begin", "push", "take", "done_rows", "abort", "forget", "end"):
            scheduler.handlers[f"batchflows_{op}"] = getattr(self, op)

    def reserve(self, key: str, interval: float, count: int = 1, cost: float = 1.0) -> tuple[float, list[float]]:
        """`count` slots of `cost` units each: the scheduler's clock now, and when each may be used."""
        now = time.monotonic()
        slot, slots = max(now, self.books.get(key, 0.0)), []
        for _ in range(count):
            slots.append(slot)
            slot += interval * cost
        self.books[key] = slot
        return now, slots

    def pause(self, key: str, seconds: float) -> None:
        self.books[key] = max(self.books.get(key, 0.0), time.monotonic() + seconds)

    def _run(self, run: str) -> _Run:
        state = self.runs.get(run)
        if state is None:
            self._expire()
            state = self.runs[run] = _Run()
        state.touched = time.monotonic()
        return state

    def _expire(self) -> None:
        old = time.monotonic() - RECORD_TTL
        for run in [r for r, s in self.runs.items() if s.touched < old]:
            del self.runs[run]

    def begin(self, run: str, generation: str) -> None:
        """A flow run starts (or restarts) `run`: chunks of earlier generations stop."""
        state = self._run(run)
        state.generation, state.abort = generation, ""

    def push(self, run: str, generation: str, chunk: str, lines: list[str], rows: list[int],
             calls: dict[str, int] | None = None) -> str:
        """A chunk's finished rows (and its call figures since its last push); returns why it must
        stop ("" to go on). Lines are kept even from a chunk that must stop: they are paid answers."""
        state = self._run(run)
        state.pending[chunk].extend(lines)
        state.done[chunk].update(rows)
        state.calls.update(calls or {})
        if state.abort:
            return state.abort
        return "" if generation == state.generation else "a newer run of the same job has started"

    def take(self, run: str) -> dict[str, dict]:
        """{"lines": chunk -> journal lines, "calls": call figures} since the last take."""
        state = self._run(run)
        taken = {"lines": dict(state.pending), "calls": dict(state.calls)}
        state.pending, state.calls = collections.defaultdict(list), collections.Counter()
        return taken

    def done_rows(self, run: str, chunk: str) -> list[int]:
        return sorted(self._run(run).done.get(chunk, ()))

    def abort(self, run: str, message: str) -> None:
        self._run(run).abort = message

    def forget(self, run: str, chunk: str) -> None:
        """The flow has the chunk's final answer and every line of it."""
        self._run(run).done.pop(chunk, None)

    def end(self, run: str) -> None:
        self.runs.pop(run, None)


def _worker():
    from distributed import get_worker

    return get_worker()


async def call_scheduler(op: str, **arguments: Any) -> Any:
    """Call a `batchflows_*` handler from a chunk's own event loop (through the worker's loop)."""
    worker = _worker()
    future = asyncio.run_coroutine_threadsafe(getattr(worker.scheduler, f"batchflows_{op}")(**arguments),
                                              worker.loop.asyncio_loop)
    return await asyncio.wrap_future(future)


def call_scheduler_sync(op: str, **arguments: Any) -> Any:
    """The same from a worker thread that runs no event loop."""
    worker = _worker()
    return asyncio.run_coroutine_threadsafe(getattr(worker.scheduler, f"batchflows_{op}")(**arguments),
                                            worker.loop.asyncio_loop).result()


class SchedulerClock:
    """This process's view of the scheduler's monotonic clock: the offset measured by the calls
    with the shortest round trip (error <= half of it), renewed every `renew` seconds for drift.
    Machines' clocks never need to agree."""

    def __init__(self, renew: float = 30.0):
        self.offset, self.round_trip, self.measured, self.renew = 0.0, math.inf, 0.0, renew

    def observe(self, sent: float, arrived: float, scheduler_now: float) -> None:
        round_trip = arrived - sent
        if round_trip <= self.round_trip or arrived - self.measured > self.renew:
            self.offset, self.round_trip, self.measured = scheduler_now - (sent + arrived) / 2, round_trip, arrived

    def local(self, scheduler_time: float) -> float:
        return scheduler_time - self.offset


_CLOCK = SchedulerClock()


class ClusterLimiter:
    """A `Limiter` whose budget lives in the scheduler's slot book. Above 20 requests/s each call
    takes a batch of slots (0.1 s worth), so a worker asks ~10 times per second, not per request.
    One instance serves every chunk of a worker process (`ClusterLimits`), so the slots a chunk
    did not use when it ended go to the next one instead of being lost."""

    def __init__(self, key: str, per_second: float, window: float = 1.0, burst: float = 1.0):
        if per_second <= 0:
            raise ValueError("rate limit must be positive")
        self.key = key
        self.interval = 1.0 / (per_second * default_headroom(per_second, window, burst=burst))
        self.tolerance = max(self.interval, 0.02)
        self.batch = 1 if per_second < 20 else min(100, math.ceil(per_second * 0.1))
        self._ready: list[float] = []  # a heap of slots taken and not used yet (chunks in several threads)
        self._mutex = threading.Lock()
        self._fetching: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}  # one fetch at a time per chunk

    async def _reserve(self, count: int, cost: float) -> list[float]:
        """`count` slots, in this process's monotonic clock."""
        sent = time.monotonic()
        now, slots = await call_scheduler("reserve", key=self.key, interval=self.interval, count=count, cost=cost)
        _CLOCK.observe(sent, time.monotonic(), now)
        return [_CLOCK.local(slot) for slot in slots]

    def _take(self) -> float | None:
        """The earliest slot still usable (one whose time passed more than `tolerance` ago is dropped)."""
        oldest = time.monotonic() - self.tolerance
        with self._mutex:
            while self._ready and self._ready[0] < oldest:
                heapq.heappop(self._ready)
            return heapq.heappop(self._ready) if self._ready else None

    async def _slot(self, cost: float) -> float:
        if cost != 1.0 or self.batch == 1:
            return (await self._reserve(1, cost))[0]
        with self._mutex:
            fetching = self._fetching.setdefault(asyncio.get_running_loop(), asyncio.Lock())
        async with fetching:
            slot = self._take()
            if slot is None:
                slots = await self._reserve(self.batch, 1.0)
                with self._mutex:
                    for fresh in slots:
                        heapq.heappush(self._ready, fresh)
                slot = self._take()
        return slot

    async def acquire(self, cost: float = 1.0) -> None:
        tolerance = max(self.tolerance, self.interval * cost)
        for _ in range(_MAX_RESLOTS):  # woken well after its slot (a stall): take a fresh one
            slot = await self._slot(cost)
            wait = slot - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if time.monotonic() - slot <= tolerance:
                return

    def pause(self, seconds: float) -> None:
        with self._mutex:
            self._ready.clear()
        worker = _worker()
        asyncio.run_coroutine_threadsafe(worker.scheduler.batchflows_pause(key=self.key, seconds=seconds),
                                         worker.loop.asyncio_loop)

    def close(self) -> None:
        """A chunk is done with it: its fetch lock goes (its slots stay for the next chunk)."""
        with self._mutex:
            self._fetching = {loop: lock for loop, lock in self._fetching.items() if not loop.is_closed()}


_LIMITERS: dict[tuple[str, float, float, float], ClusterLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


class ClusterLimits:
    """`Limits` on a Dask cluster: the scheduler's slot books, one limiter per API in each process."""

    def limiter(self, key: str, per_second: float, window: float = 1.0, burst: float = 1.0) -> ClusterLimiter:
        with _LIMITERS_LOCK:
            found = _LIMITERS.get((key, per_second, window, burst))
            if found is None:
                found = _LIMITERS[(key, per_second, window, burst)] = ClusterLimiter(key, per_second, window, burst)
            return found
