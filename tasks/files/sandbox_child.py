"""The child side of tasks/files/sandbox.py: `python -m tasks.files.sandbox_child MODULE:FUNCTION MEMORY_MB PARENT_PID
IDLE_SECONDS` imports the target, caps its address space, then answers one JSON line per line of JSON
arguments, until its input ends or no line came for IDLE_SECONDS. Kept apart from tasks/files/sandbox.py so
that a child imports only what it runs.
"""
from __future__ import annotations

import ctypes
import importlib
import json
import os
import resource
import select
import signal
import sys
import time


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this process when its parent dies (a loop must not outlive the run)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)


def _send(channel, reply: dict) -> None:
    channel.write(json.dumps(reply, default=str).encode() + b"\n")
    channel.flush()


def _lines(idle_seconds: float):
    """The lines arriving on stdin; ends at the end of input or after `idle_seconds` without one."""
    pending = b""
    while True:
        while b"\n" not in pending:
            if not select.select([0], [], [], idle_seconds)[0]:
                return
            data = os.read(0, 1 << 16)
            if not data:
                return
            pending += data
        line, pending = pending.split(b"\n", 1)
        yield line


def serve(target: str, memory_mb: int, parent: int, idle_seconds: float) -> None:
    """The child: import `target`, cap memory, then answer one JSON line per line of arguments."""
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever the target prints goes to stderr, not into the answers
    try:
        _die_with_parent(parent)
        module, _, name = target.partition(":")
        function = getattr(importlib.import_module(module), name)
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, resource.getrlimit(resource.RLIMIT_AS)[1]))
    except BaseException as error:
        return _send(replies, {"fatal": f"{type(error).__name__}: {error}"})
    _send(replies, {"ready": True})
    for line in _lines(idle_seconds):
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
    serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
