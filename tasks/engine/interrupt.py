"""Ctrl-C and SIGTERM during a CLI run: one line, then a quiet stop that leaves the run resumable.

The first SIGINT or SIGTERM prints one line and sends everything this process writes to stderr
from then on to /dev/null (Prefect's crash report, the chunks' "stopped" task failures), then raises
KeyboardInterrupt in the main thread. The flow engine records the run as Crashed on its server
(which runs in a session of its own, so the signal does not reach it), the chunk engine stops its
chunks and journals what they finished, and the CLI exits with 128 + the signal number.

While a flow runs, Prefect's own SIGTERM handler raises its TerminationSignal instead of ours; a
watcher thread on the signal wakeup fd still sees the signal as it arrives and prints the line.
Later signals are ignored: the stop is bounded (chunks stop within 0.25 s of the signal).
"""
from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class Interruption:
    """What stopped the run, if anything."""

    signum: int | None = None
    raised: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)

    def notice(self, signum: int) -> None:
        """The first signal: its one line, then stderr goes quiet."""
        with self.lock:
            if self.signum is not None:
                return
            self.signum = signum
            line = f"batchflows: interrupted by {signal.Signals(signum).name}; run the same command again to resume\n"
            if os.isatty(2):
                line = "\n" + line  # below a progress bar
            os.write(2, line.encode())  # not through sys.stderr: the main thread may be inside its write
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)

    def on_signal(self, signum: int, _frame: object) -> None:
        self.notice(signum)
        if not self.raised:
            self.raised = True
            raise KeyboardInterrupt


@contextmanager
def interruptible() -> Iterator[Interruption]:
    """Handle SIGINT and SIGTERM as described above for the duration (in the main thread)."""
    interruption = Interruption()
    saved_stderr = os.dup(2)
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    previous_fd = signal.set_wakeup_fd(write_end)
    previous = {signum: signal.signal(signum, interruption.on_signal) for signum in SIGNALS}

    def watch() -> None:  # one byte per signal Python receives, whoever handles it
        while data := os.read(read_end, 64):
            for signum in data:
                if signum in SIGNALS:
                    interruption.notice(signum)

    watcher = threading.Thread(target=watch, name="batchflows-signals", daemon=True)
    watcher.start()
    try:
        yield interruption
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(previous_fd)
        os.close(write_end)  # the watcher reads the end of the pipe and returns
        watcher.join()
        os.close(read_end)
        if interruption.signum is None:  # else stderr stays quiet until the process exits
            os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
