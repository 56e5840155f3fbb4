"""A rate limiter that holds across coroutines, threads and processes on one machine.

It is a GCRA slot scheduler: one shared "next free slot" timestamp lives in a small file, guarded by
`fcntl.flock`. Each request takes the next slot (`interval = 1 / rate` after the previous one) and
sleeps until it. Every chunk, thread, Dask worker process or second flow run on the machine that
points at the same file shares the same budget, so the API sees at most `rate` requests per second
however the work is spread. A 429 with Retry-After pushes the shared slot forward: everyone pauses.
"""
from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import struct
import threading
import time
from pathlib import Path

_STALE_AFTER = 3600.0  # a slot this far ahead can only come from a clock jump: start afresh
_MAX_RESLOTS = 4  # after this many late wake-ups in a row, send anyway


def default_headroom(per_second: float, window: float = 1.0, jitter: float = 0.05, burst: float = 1.0) -> float:
    """The share of the limit to aim at so that arrivals `jitter` seconds late, plus one request
    of `burst` units, still fit in the API's `window` (widened to hold >= 20 such requests):
    0.93 at 50/s, 0.95 from ~500/s, up to 0.99 for per-minute limits."""
    window = max(window, 20.0 * burst / per_second)
    return min(0.99, (1 - burst / (per_second * window)) / (1 + jitter / window))


def limiter_path(state_dir: str | os.PathLike, api_id: str) -> Path:
    """The shared state file for one API (identified e.g. by its base URL)."""
    digest = hashlib.sha256(api_id.encode()).hexdigest()[:16]
    return Path(state_dir) / "ratelimits" / f"{digest}.slot"


class RateLimiter:
    """`await limiter.acquire()` before each request; `limiter.pause(seconds)` after a 429.

    A request may cost more than one unit (`acquire(cost)`): a token limiter charges each LLM call
    its estimated tokens, and the next caller waits until that many tokens' worth of time passed.
    """

    def __init__(self, path: str | os.PathLike, per_second: float, headroom: float | None = None,
                 window: float = 1.0, burst: float = 1.0):
        if per_second <= 0:
            raise ValueError("rate limit must be positive")
        headroom = headroom or default_headroom(per_second, window, burst=burst)
        if not 0 < headroom <= 1:
            raise ValueError("headroom must be in (0, 1]")
        self.path = Path(path)
        self.interval = 1.0 / (per_second * headroom)
        self.tolerance = max(self.interval, 0.02)  # how late after its slot a sender may still go
        self._fd: int | None = None
        self._thread_lock = threading.Lock()

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        return self._fd

    def _update(self, step) -> float:
        """Atomically read the shared next-slot time, store step(now, slot) -> (new, result)."""
        with self._thread_lock:
            fd = self._open()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                raw = os.pread(fd, 8, 0)
                slot = struct.unpack("d", raw)[0] if len(raw) == 8 else 0.0
                now = time.time()
                if slot > now + _STALE_AFTER:
                    slot = 0.0
                new_slot, result = step(now, slot)
                os.pwrite(fd, struct.pack("d", new_slot), 0)
                return result
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def reserve(self, cost: float = 1.0) -> float:
        """Take the next slot for `cost` units; returns the wall-clock time at which it may be used."""

        def take(now: float, slot: float):
            mine = max(now, slot)
            return mine + self.interval * cost, mine

        return self._update(take)

    def pause(self, seconds: float) -> None:
        """Nobody sharing this limiter sends before now + seconds (a Retry-After)."""
        self._update(lambda now, slot: (max(slot, now + seconds), 0.0))

    async def acquire(self, cost: float = 1.0) -> None:
        """Wait for a slot. A sender that wakes well after its slot (CPU or GIL stall) would fire
        together with on-time senders and burst past the limit: it takes a fresh slot instead."""
        tolerance = max(self.tolerance, self.interval * cost)
        for _ in range(_MAX_RESLOTS):
            slot = self.reserve(cost)
            wait = slot - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if time.time() - slot <= tolerance:
                return

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class FileLimits:
    """`Limits` on one machine: one slot file per API under `state_dir` (every thread, process
    and run on the machine shares it)."""

    def __init__(self, state_dir: str | os.PathLike):
        self.state_dir = state_dir

    def limiter(self, key: str, per_second: float, window: float = 1.0, burst: float = 1.0) -> RateLimiter:
        return RateLimiter(limiter_path(self.state_dir, key), per_second, window=window, burst=burst)
