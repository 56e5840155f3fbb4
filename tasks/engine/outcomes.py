"""What a row's work can end in: a result, a `Partial` or `Failed` result, a `RowError` (the row
fails, the batch goes on), a `FatalError` (no row can succeed: the run stops) or a `MachineryError`
(our own store or cache failed: not the row's fault); and the HTTP figures a chunk reports (`CallStats`)."""
from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, fields
from typing import Any


class RowError(Exception):
    """This row failed; `retryable` rows are tried again in the follow-up pass and on rerun.

    `bad_input` marks a problem with the row's own data: the message gets the file and row prefixed;
    `status` is the API's HTTP status when an answer caused it.
    """

    def __init__(self, message: str, retryable: bool = False, bad_input: bool = False, status: int | None = None):
        super().__init__(message)
        self.retryable, self.bad_input, self.status = retryable, bad_input, status


class GaveUp(RowError):
    """A call failed on every attempt (transiently: retryable). `attempts` counts the requests sent
    for it, over `passes` tries of the row (the follow-up pass and reruns try it again)."""

    def __init__(self, problem: str, attempts: int, status: int | None = None, passes: int = 1):
        self.problem, self.attempts, self.passes = problem, attempts, passes
        over = f" over {passes} passes" if passes > 1 else ""
        super().__init__(f"gave up after {attempts} attempts{over}: {problem}", retryable=True, status=status)

    def after(self, attempts: int, passes: int) -> "GaveUp":
        """The same failure counted with the attempts and passes of the row's earlier tries."""
        return GaveUp(self.problem, self.attempts + attempts, self.status, self.passes + passes)


class FatalError(Exception):
    """No row can succeed (e.g. the API rejects the key): stop the run with this message."""


class Stopped(FatalError):
    """A chunk was told to stop: another chunk met a FatalError, or its flow run is gone."""


class Braked(FatalError):
    """The run stopped itself: its rows failed systematically (tasks/engine/brake.py)."""


class TooManyFailed(FatalError):
    """The run finished, its output is written, but more of its rows failed than the run accepts
    (`RunOptions.max_failed_fraction`). `figures` are the run's figures, for a flow that writes
    more outputs before it fails."""

    def __init__(self, message: str, figures: dict[str, Any]):
        super().__init__(message)
        self.figures = figures


FIRST_CALLS: ContextVar[bool] = ContextVar("first_calls", default=False)
"""True in a chunk sent before its run saw any row succeed: an API that cannot be reached then
(connection refused, unknown host) stops the run instead of failing every row after its retries."""


@dataclass
class CallStats:
    requests: int = 0
    retries: int = 0
    throttled: int = 0  # 429 answers
    server_errors: int = 0  # 5xx answers
    timeouts: int = 0
    connection_errors: int = 0

    def add(self, other: "CallStats | dict[str, int]") -> None:
        values = other if isinstance(other, dict) else other.__dict__
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + values.get(f.name, 0))

    def since(self, before: "CallStats") -> "CallStats":
        """What happened after `before` was taken (both counted from the same start)."""
        return CallStats(**{f.name: getattr(self, f.name) - getattr(before, f.name) for f in fields(self)})

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))


@dataclass
class Partial:
    """A handler's answer that is usable but incomplete: `reason` as the error, status `partial`
    or a workload's own word for it (file metadata: `unsupported`, `timeout`)."""

    result: dict[str, Any]
    reason: str
    status: str = "partial"


@dataclass
class Failed(Partial):
    """A failed row whose result is still worth keeping (the usage and cost of a paid call)."""

    status: str = "failed"


class MachineryError(Exception):
    """Our own machinery (a store, a cache, the channel) failed: never a row's fault, so the chunk
    fails (and is retried, then fails the run loudly) instead of the row failing quietly."""
