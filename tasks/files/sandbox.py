"""Killable child processes for work that may hang or eat memory (hachoir on a hostile file).

`Sandbox(target, timeout, memory_mb)` is an engine resource (`name`, `fingerprint`, `client()`): each
chunk's client runs `target` ("module:function") in child processes (tasks/files/sandbox_child.py), one per
DEPTH calls in flight. A child caps its own address space (RLIMIT_AS), dies with its parent and
answers one JSON line per call, in order; the parent waits `timeout` seconds for each answer from
when the child began that call, then kills the child (SIGKILL) and sends the calls queued behind to a
new one. Every call ends in an `Answer`: the target's value, or a problem (`timeout`, `memory`,
`died`, `error`) with a reason. The client's `peak_rss_mb` is the largest peak RSS of its children.

A child that answered is kept for the next chunk in the same process (starting one imports the
parsers: ~0.3 s of CPU), in a pool per process; `Sandbox.prestart(n)` puts n children starting into
that pool at once (their imports overlap the flow's own work before the first chunk);
`stop_idle_children()` ends the pooled ones, and a child left unused for IDLE_SECONDS is not reused
(it leaves by itself after twice that).
"""
from __future__ import annotations

import asyncio
import collections
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.engine.chunk import peak_rss_mb
from tasks.engine.job import Limits
from tasks.engine.outcomes import CallStats, FatalError

PROJECT_ROOT = str(Path(__file__).resolve().parents[2])
START_TIMEOUT = 60.0
IDLE_SECONDS = 120.0
DEPTH = 4  # calls queued to one child
# Children are started from this one long-lived thread: PR_SET_PDEATHSIG fires when the *thread* that
# started a child ends, and a chunk's thread may end while its children wait in the pool.
_STARTER = ThreadPoolExecutor(1, thread_name_prefix="sandbox-starter")
_POOL: dict[tuple[str, int], list["_Idle"]] = {}  # (target, memory_mb) -> idle children
_POOL_LOCK = threading.Lock()


@dataclass(frozen=True)
class _Idle:
    """A child waiting in the pool: since when, and whether its "ready" line was read (a prestarted
    child's is still in the pipe)."""

    popen: subprocess.Popen
    since: float
    greeted: bool = True


@dataclass(frozen=True)
class Answer:
    value: Any = None
    problem: str = ""  # "", "timeout", "memory" (the cap was reached), "died" or "error" (an exception)
    error: str = ""
    elapsed_ms: float = 0.0


@dataclass(frozen=True)
class Sandbox:
    target: str
    timeout: float = 10.0
    memory_mb: int = 1024
    name: str = "parser"

    @property
    def fingerprint(self) -> str:
        """What changes the answers (part of the job's fingerprint)."""
        return f"sandbox:{self.target}?timeout={self.timeout:g}&memory_mb={self.memory_mb}"

    def client(self, concurrency: int, limits: Limits) -> "SandboxClient":
        return SandboxClient(self, concurrency)

    def prestart(self, count: int) -> None:
        """Start `count` children into this process's pool now, without waiting for them: the
        chunks that follow in this process take them instead of starting their own."""
        for _ in range(count):
            _STARTER.submit(_pool_started_child, self)


def _exit_text(code: int) -> str:
    if code < 0:
        name = signal.Signals(-code).name
        return f"{name}: killed, e.g. out of memory" if name == "SIGKILL" else name
    return f"exit code {code}"


def _kill(popen: subprocess.Popen) -> None:
    popen.kill()  # no-op once it has exited
    popen.wait()
    for pipe in (popen.stdin, popen.stdout):
        pipe.close()


def _close(pipes) -> None:
    """Close a chunk's copies of a child's pipes (the loop closes one itself when the child dies)."""
    for pipe in pipes:
        if not pipe.is_closing():
            pipe.close()


def stop_idle_children() -> None:
    """End the pooled children of this process (at the end of a run)."""
    _STARTER.submit(int).result()  # the starts `prestart` queued are in the pool first (a Popen each: ms)
    with _POOL_LOCK:
        idle = [child.popen for children in _POOL.values() for child in children]
        _POOL.clear()
    for popen in idle:
        _kill(popen)


def _take_idle(key: tuple[str, int]) -> _Idle | None:
    """A pooled child that is alive and was used recently; stale ones are stopped."""
    while True:
        with _POOL_LOCK:
            if not _POOL.get(key):
                return None
            child = _POOL[key].pop()
        if child.popen.poll() is None and time.monotonic() - child.since < IDLE_SECONDS:
            return child
        _kill(child.popen)


def _start_child(spec: Sandbox) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (PROJECT_ROOT, os.environ.get("PYTHONPATH")))),
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "tasks.files.sandbox_child", spec.target, str(spec.memory_mb),
                             str(os.getpid()), str(2 * IDLE_SECONDS)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)  # Ctrl+C stops the parent, which stops the children


def _pool_started_child(spec: Sandbox) -> None:
    """Start a child (on the starter thread) and pool it before it has said it is ready."""
    popen = _start_child(spec)
    with _POOL_LOCK:
        _POOL.setdefault((spec.target, spec.memory_mb), []).append(_Idle(popen, time.monotonic(), greeted=False))


@dataclass
class _Call:
    line: bytes
    future: asyncio.Future
    started: float = 0.0  # when the child began it: sent to an idle child, or its predecessor answered


class _Lane:
    """One child process a chunk uses, and the calls sent to it but not answered yet, in order."""

    def __init__(self, child: tuple[subprocess.Popen, asyncio.StreamReader, tuple, bool]):
        self.popen, self.answers, self.pipes, self.pooled = child
        self.answered = 0  # a pooled child that dies before its first answer died waiting, not of a file
        self.waiting: collections.deque[_Call] = collections.deque()
        self.outbox: list[_Call] = []  # written at the end of this turn of the event loop: one write for many
        self.work = asyncio.Event()
        self.task: asyncio.Task | None = None

    @property
    def load(self) -> int:
        return len(self.waiting) + len(self.outbox)


class SandboxClient:
    """One chunk's child processes (taken from the pool or started on first use); `await call(*args)`
    -> Answer. Each child has up to DEPTH calls queued, so it never waits for this process, and the
    calls made in one turn of the event loop go in one write. The timeout of a call runs from when
    the child began it: when it was sent to an idle child or the call before it was answered. A child's
    pipes are used through the chunk's event loop as copies that the chunk closes when it gives the
    child back."""

    def __init__(self, spec: Sandbox, size: int):
        self.spec, self.stats = spec, CallStats()
        self.size = max(1, math.ceil(size / DEPTH))
        self.peak_rss_mb = 0.0
        self._lanes: list[_Lane] = []
        self._adding: asyncio.Lock | None = None

    async def __aenter__(self) -> "SandboxClient":
        self._adding = asyncio.Lock()
        return self

    async def __aexit__(self, *exc) -> None:
        lanes, self._lanes = self._lanes, []
        for lane in lanes:
            lane.task.cancel()
        await asyncio.gather(*(lane.task for lane in lanes), return_exceptions=True)
        for lane in lanes:
            if lane.popen is not None:
                self._let_go(lane, keep=exc[0] is None and not lane.load)

    def close(self) -> None:
        pass

    async def call(self, *args: Any) -> Answer:
        self.stats.requests += 1
        lane = await self._lane()
        call = _Call(json.dumps(args).encode() + b"\n", asyncio.get_running_loop().create_future())
        if not lane.outbox:
            asyncio.get_running_loop().call_soon(self._send, lane)
        lane.outbox.append(call)
        return await call.future

    async def _lane(self) -> _Lane:
        """The lane with the fewest calls; a new one while there are fewer than `size` and all are busy."""
        async with self._adding:
            best = min(self._lanes, key=lambda lane: lane.load, default=None)
            if len(self._lanes) < self.size and (best is None or best.load):
                best = _Lane(await self._attach())
                best.task = asyncio.create_task(self._serve(best))
                self._lanes.append(best)
            return best

    def _send(self, lane: _Lane) -> None:
        """Write the lane's outbox to its child in one go (not while the child is being replaced)."""
        if lane.popen is None or not lane.outbox:
            return
        calls, lane.outbox, now = lane.outbox, [], time.monotonic()
        for call in calls:
            if not lane.waiting:
                call.started = now
            lane.waiting.append(call)
        lane.pipes[1].write(b"".join(call.line for call in calls))  # buffered by the loop: never blocks it
        lane.work.set()

    async def _serve(self, lane: _Lane) -> None:
        """Answer the lane's calls in order until the chunk ends or the lane loses its child with
        nothing queued. On a failure here (a child that cannot be started), every call of the lane
        gets the exception: none waits for ever."""
        try:
            while lane.popen is not None:
                if lane.waiting:
                    await self._answer_head(lane)
                else:
                    lane.work.clear()
                    await lane.work.wait()
        except Exception as error:
            if lane in self._lanes:
                self._lanes.remove(lane)
            if lane.popen is not None:
                self._let_go(lane, keep=False)
            for call in (*lane.waiting, *lane.outbox):
                call.future.done() or call.future.set_exception(error)

    async def _answer_head(self, lane: _Lane) -> None:
        """Answer the oldest call. After a timeout, a death or a memory cap, the child is killed, and
        a fresh one gets the calls queued behind (the lane ends if there are none)."""
        head = lane.waiting[0]
        overdue = head.started + self.spec.timeout - time.monotonic()
        try:  # an answer already in the pipe is taken even when this loop was late
            async with asyncio.timeout(max(overdue, 0.05)):  # a timer, not a task per answer as wait_for
                line = await lane.answers.readline()
        except TimeoutError:
            self.stats.timeouts += 1
            line = None
        now = time.monotonic()
        waited = round((now - head.started) * 1000, 3)
        if line is None:
            answer = Answer(problem="timeout", error=f"no answer within {self.spec.timeout:g} s: the parser was killed",
                            elapsed_ms=waited)
        elif not line and lane.pooled and not lane.answered:  # it died while it waited in the pool
            return await self._replace(lane, from_pool=False)
        elif not line:
            code = await asyncio.to_thread(lane.popen.wait)
            answer = Answer(problem="died", error=f"the parser process died ({_exit_text(code)})", elapsed_ms=waited)
        else:
            reply = json.loads(line)
            answer = Answer(reply.get("value"), reply.get("problem", ""), reply.get("error", ""), reply["elapsed_ms"])
        lane.waiting.popleft()
        lane.answered += 1
        if not head.future.done():  # not cancelled
            head.future.set_result(answer)
        if answer.problem in ("timeout", "died", "memory"):
            await self._replace(lane)
        elif lane.waiting:
            lane.waiting[0].started = now

    async def _replace(self, lane: _Lane, from_pool: bool = True) -> None:
        """Kill the lane's child; a new one gets the calls not answered yet, or the lane ends."""
        lane.outbox[:0], lane.waiting = lane.waiting, collections.deque()
        self._let_go(lane, keep=False)
        lane.popen = None
        if not lane.outbox:
            self._lanes.remove(lane)  # the next call starts a lane of its own
            return
        lane.popen, lane.answers, lane.pipes, lane.pooled = await self._attach(from_pool)
        lane.answered = 0
        self._send(lane)

    async def _attach(self, from_pool: bool = True) -> tuple[subprocess.Popen, asyncio.StreamReader, tuple, bool]:
        """A child (from the pool or started), the reader of its answers, the transports on this loop
        of copies of its pipes (answers, requests), and whether it was pooled."""
        idle = _take_idle((self.spec.target, self.spec.memory_mb)) if from_pool else None
        popen, pooled, greeted = (idle.popen, True, idle.greeted) if idle else (None, False, False)
        if not pooled:
            starting = asyncio.get_running_loop().run_in_executor(_STARTER, _start_child, self.spec)
            try:
                popen = await asyncio.shield(starting)
            except asyncio.CancelledError:  # the chunk ended: the child being started must not be left over
                starting.add_done_callback(lambda done: done.cancelled() or done.exception() or _kill(done.result()))
                raise
        loop, pipes = asyncio.get_running_loop(), []
        try:
            answers = asyncio.StreamReader(limit=64 << 20)
            pipes.append((await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(answers),
                                                       os.fdopen(os.dup(popen.stdout.fileno()), "rb", buffering=0)))[0])
            pipes.append((await loop.connect_write_pipe(asyncio.Protocol,
                                                        os.fdopen(os.dup(popen.stdin.fileno()), "wb", buffering=0)))[0])
            hello = {"ready": True}
            if not greeted:
                try:
                    hello = json.loads(await asyncio.wait_for(answers.readline(), START_TIMEOUT) or b"{}")
                except (asyncio.TimeoutError, ValueError):
                    hello = {}
            if not hello.get("ready"):
                raise FatalError(f"the parser process for {self.spec.target} did not start: "
                                 f"{hello.get('fatal') or 'no answer'}")
        except BaseException:
            _close(pipes)
            _kill(popen)
            raise
        return popen, answers, tuple(pipes), pooled

    def _let_go(self, lane: _Lane, keep: bool) -> None:
        """Detach the lane's child: back to the pool if `keep` and it is still well, else killed."""
        self.peak_rss_mb = max(self.peak_rss_mb, peak_rss_mb(lane.popen.pid))  # while it is alive
        _close(lane.pipes)
        if keep and lane.popen.poll() is None:
            with _POOL_LOCK:
                _POOL.setdefault((self.spec.target, self.spec.memory_mb), []).append(_Idle(lane.popen, time.monotonic()))
        else:
            _kill(lane.popen)
