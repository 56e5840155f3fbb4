"""Killable child processes for work that may hang or eat memory (hachoir on a hostile file).

`Sandbox(target, timeout, memory_mb)` is an engine "api" (`name`, `base_url`, `client()`): each
chunk's client runs `target` ("module:function") in up to `concurrency` child processes
(tasks/sandbox_child.py), one call at a time per child. A child caps its own address space
(RLIMIT_AS), dies with its parent and answers one JSON line per call; the parent waits `timeout`
seconds for the answer, then kills the child (SIGKILL) and starts a new one for the next call. Every
call ends in an `Answer`: the target's value, or a problem (`timeout`, `memory`, `died`, `error`) with
a reason. The client's `peak_rss_mb` is the largest peak RSS of its children (for the run summary).
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.chunk import peak_rss_mb
from tasks.http import CallStats, FatalError

PROJECT_ROOT = str(Path(__file__).resolve().parents[1])
START_TIMEOUT = 60.0


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
    def base_url(self) -> str:
        """What changes the answers (part of the job's fingerprint)."""
        return f"sandbox:{self.target}?timeout={self.timeout:g}&memory_mb={self.memory_mb}"

    def client(self, concurrency: int, state_dir: str) -> "SandboxClient":
        return SandboxClient(self, concurrency)


def _exit_text(code: int) -> str:
    if code < 0:
        name = signal.Signals(-code).name
        return f"{name}: killed, e.g. out of memory" if name == "SIGKILL" else name
    return f"exit code {code}"


@dataclass
class _Child:
    popen: subprocess.Popen
    answers: asyncio.StreamReader
    transport: asyncio.BaseTransport


class SandboxClient:
    """One chunk's child processes, started on first use; `await call(*args)` -> Answer.

    Children are started with `subprocess.Popen` and only their stdout is read through the event
    loop: uvloop refuses to spawn from two event loops at once (chunks run in several threads)."""

    def __init__(self, spec: Sandbox, size: int):
        self.spec, self.size, self.stats = spec, max(1, size), CallStats()
        self.peak_rss_mb = 0.0
        self._idle: asyncio.Queue | None = None
        self._live: list[_Child] = []

    async def __aenter__(self) -> "SandboxClient":
        self._idle = asyncio.Queue()
        for _ in range(self.size):
            self._idle.put_nowait(None)  # a slot whose child is not started yet
        return self

    async def __aexit__(self, *exc) -> None:
        for child in list(self._live):
            await self._stop(child, kill=exc[0] is not None)

    def close(self) -> None:
        pass

    async def call(self, *args: Any) -> Answer:
        child = await self._idle.get()
        try:
            if child is None:
                child = await self._start()
            answer = await self._ask(child, args)
            if answer.problem in ("timeout", "memory", "died"):
                await self._stop(child, kill=True)
                child = None
            return answer
        finally:
            self._idle.put_nowait(child)

    async def _start(self) -> _Child:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (PROJECT_ROOT, os.environ.get("PYTHONPATH")))),
               "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        popen = subprocess.Popen([sys.executable, "-m", "tasks.sandbox_child", self.spec.target, str(self.spec.memory_mb),
                                  str(os.getpid())],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                 start_new_session=True)  # Ctrl+C stops the parent, which stops the children
        answers = asyncio.StreamReader(limit=64 << 20)
        transport, _ = await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(answers), popen.stdout)
        child = _Child(popen, answers, transport)
        self._live.append(child)
        try:
            hello = json.loads(await asyncio.wait_for(answers.readline(), START_TIMEOUT) or b"{}")
        except (asyncio.TimeoutError, ValueError):
            hello = {}
        if not hello.get("ready"):
            await self._stop(child, kill=True)
            raise FatalError(f"the parser process for {self.spec.target} did not start: "
                             f"{hello.get('fatal') or 'no answer'}")
        return child

    async def _ask(self, child: _Child, args: tuple) -> Answer:
        self.stats.requests += 1
        started = time.monotonic()
        waited = lambda: round((time.monotonic() - started) * 1000, 3)  # noqa: E731
        try:
            child.popen.stdin.write(json.dumps(args).encode() + b"\n")  # one short line: the pipe never fills
            child.popen.stdin.flush()
            line = await asyncio.wait_for(child.answers.readline(), self.spec.timeout)
        except asyncio.TimeoutError:
            self.stats.timeouts += 1
            return Answer(problem="timeout", error=f"no answer within {self.spec.timeout:g} s: the parser was killed",
                          elapsed_ms=waited())
        except BrokenPipeError:
            line = b""
        if not line:
            code = await asyncio.to_thread(child.popen.wait)
            return Answer(problem="died", error=f"the parser process died ({_exit_text(code)})", elapsed_ms=waited())
        reply = json.loads(line)
        return Answer(reply.get("value"), reply.get("problem", ""), reply.get("error", ""), reply["elapsed_ms"])

    async def _stop(self, child: _Child, kill: bool) -> None:
        self.peak_rss_mb = max(self.peak_rss_mb, peak_rss_mb(child.popen.pid))  # while it is alive
        try:
            child.popen.stdin.close()  # a child still reading ends its loop at the end of its input
        except BrokenPipeError:
            pass
        if not kill:
            try:
                await asyncio.to_thread(child.popen.wait, 5)
            except subprocess.TimeoutExpired:
                pass
        child.popen.kill()  # no-op once it has exited
        await asyncio.to_thread(child.popen.wait)
        child.transport.close()
        self._live.remove(child)
