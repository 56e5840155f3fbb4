"""Killable child processes for work that may hang or eat memory (hachoir on a hostile file).

`Sandbox(target, timeout, memory_mb)` is an engine "api" (`name`, `base_url`, `client()`): each
chunk's client runs `target` ("module:function") in up to `concurrency` child processes, one call at
a time per child. A child caps its own address space (RLIMIT_AS), dies with its parent
(PR_SET_PDEATHSIG) and answers one JSON line per call; the parent waits `timeout` seconds for the
answer, then kills the child (SIGKILL) and starts a new one for the next call. Every call ends in an
`Answer`: the target's value, or a problem (`timeout`, `memory`, `died`, `error`) with a reason.
"""
from __future__ import annotations

import asyncio
import ctypes
import importlib
import json
import os
import resource
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


class SandboxClient:
    """One chunk's child processes, started on first use; `await call(*args)` -> Answer."""

    def __init__(self, spec: Sandbox, size: int):
        self.spec, self.size, self.stats = spec, max(1, size), CallStats()
        self._idle: asyncio.Queue | None = None
        self._live: set[asyncio.subprocess.Process] = set()

    async def __aenter__(self) -> "SandboxClient":
        self._idle = asyncio.Queue()
        for _ in range(self.size):
            self._idle.put_nowait(None)  # a slot whose child is not started yet
        return self

    async def __aexit__(self, *exc) -> None:
        for process in list(self._live):
            await self._stop(process, kill=exc[0] is not None)

    def close(self) -> None:
        pass

    async def call(self, *args: Any) -> Answer:
        process = await self._idle.get()
        try:
            if process is None:
                process = await self._start()
            answer = await self._ask(process, args)
            if answer.problem in ("timeout", "memory", "died"):
                await self._stop(process, kill=True)
                process = None
            return answer
        finally:
            self._idle.put_nowait(process)

    async def _start(self) -> asyncio.subprocess.Process:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (PROJECT_ROOT, os.environ.get("PYTHONPATH")))),
               "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tasks.sandbox", self.spec.target, str(self.spec.memory_mb),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            env=env, limit=64 << 20, start_new_session=True)  # Ctrl+C stops the parent, which stops the children
        self._live.add(process)
        try:
            hello = json.loads(await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT) or b"{}")
        except (asyncio.TimeoutError, ValueError):
            hello = {}
        if not hello.get("ready"):
            await self._stop(process, kill=True)
            raise FatalError(f"the parser process for {self.spec.target} did not start: "
                             f"{hello.get('fatal') or 'no answer'}")
        return process

    async def _ask(self, process: asyncio.subprocess.Process, args: tuple) -> Answer:
        self.stats.requests += 1
        started = time.monotonic()
        try:
            process.stdin.write(json.dumps(args).encode() + b"\n")
            await process.stdin.drain()
            line = await asyncio.wait_for(process.stdout.readline(), self.spec.timeout)
        except asyncio.TimeoutError:
            self.stats.timeouts += 1
            return Answer(problem="timeout", error=f"no answer within {self.spec.timeout:g} s: the parser was killed",
                          elapsed_ms=round((time.monotonic() - started) * 1000, 3))
        except ConnectionError:
            line = b""
        if not line:
            return Answer(problem="died", error=f"the parser process died ({_exit_text(await process.wait())})",
                          elapsed_ms=round((time.monotonic() - started) * 1000, 3))
        reply = json.loads(line)
        return Answer(reply.get("value"), reply.get("problem", ""), reply.get("error", ""), reply["elapsed_ms"])

    async def _stop(self, process: asyncio.subprocess.Process, kill: bool) -> None:
        if not kill and process.returncode is None:
            process.stdin.close()  # the child's loop ends at end of input
            try:
                await asyncio.wait_for(process.wait(), 5)
            except asyncio.TimeoutError:
                kill = True
        if kill and process.returncode is None:
            try:
                process.kill()
            except ProcessLookupError:
                pass
        await process.wait()
        self._live.discard(process)


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies (a loop must not outlive the run)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:
        os._exit(1)


def _send(channel, reply: dict) -> None:
    channel.write(json.dumps(reply, default=str).encode() + b"\n")
    channel.flush()


def serve(target: str, memory_mb: int) -> None:
    """The child: import `target`, cap memory, then answer one JSON line per line of arguments."""
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever the target prints goes to stderr, not into the answers
    try:
        _die_with_parent()
        module, _, name = target.partition(":")
        function = getattr(importlib.import_module(module), name)
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, resource.getrlimit(resource.RLIMIT_AS)[1]))
    except BaseException as error:
        return _send(replies, {"fatal": f"{type(error).__name__}: {error}"})
    _send(replies, {"ready": True})
    for line in sys.stdin.buffer:
        started = time.perf_counter()
        try:
            reply = {"value": function(*json.loads(line))}
        except MemoryError:
            reply = {"problem": "memory", "error": f"memory cap of {memory_mb} MB reached"}
        except Exception as error:
            reply = {"problem": "error", "error": f"{type(error).__name__}: {error}"[:500]}
        reply["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 3)
        try:
            _send(replies, reply)
        except MemoryError:
            _send(replies, {"problem": "memory", "error": f"memory cap of {memory_mb} MB reached",
                            "elapsed_ms": reply["elapsed_ms"]})
        if reply.get("problem") == "memory":
            return  # the next call gets a fresh process


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
