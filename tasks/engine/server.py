"""The Prefect server a `batchflows` CLI run talks to when PREFECT_API_URL is not set.

Prefect's own fallback, a temporary server started inside every run, costs 7-10 s per run and
shares the run's process group, so Ctrl-C kills it before the run can record that it stopped.
Instead, the first CLI run starts a server for its PREFECT_HOME under a small keeper process in a
session of its own; later runs find it (its address in PREFECT_HOME/batchflows-server.json, checked
on /health) and use it at once. The keeper stops the server when no run has used it for
BATCHFLOWS_SERVER_IDLE_MINUTES (default 60); `batchflows server stop` stops it now. With
BATCHFLOWS_SERVER_IDLE_MINUTES=0 a run starts a server of its own and stops it last.

A run holds a shared lock on PREFECT_HOME/batchflows-server.lock while it uses the server; the
keeper stops only when it can take that lock exclusively, so no run loses its server to the idle
timer. This module imports only the standard library at the top: the keeper runs it as
`python -m tasks.engine.server keep HOME IDLE_SECONDS` without loading Prefect.
"""
from __future__ import annotations

import dataclasses
import fcntl
import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

IDLE_MINUTES_ENV = "BATCHFLOWS_SERVER_IDLE_MINUTES"
DEFAULT_IDLE_MINUTES = 60.0
START_TIMEOUT = 120.0  # a first start on a busy machine, database migrations included
STOP_GRACE = 5.0  # then SIGKILL: SQLite keeps its journal consistent either way
POLL_SECONDS = 0.5
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback never goes through a proxy


@dataclasses.dataclass(frozen=True)
class ServerFiles:
    """Where the shared server of one PREFECT_HOME keeps its address, lock and log."""

    home: Path

    @property
    def state(self) -> Path:
        return self.home / "batchflows-server.json"

    @property
    def lock(self) -> Path:  # runs: shared; the keeper: exclusive, to stop
        return self.home / "batchflows-server.lock"

    @property
    def start_lock(self) -> Path:  # one run at a time finds or starts the server
        return self.home / "batchflows-server.start.lock"

    @property
    def log(self) -> Path:
        return self.home / "batchflows-server.log"


@dataclasses.dataclass(frozen=True)
class ServerState:
    """A running shared server: its keeper (the leader of their session), the server, its API URL."""

    keeper_pid: int
    server_pid: int
    url: str
    idle_minutes: float

    def write(self, path: Path) -> None:
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(dataclasses.asdict(self)))
        partial.replace(path)

    @classmethod
    def read(cls, path: Path) -> ServerState | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with _NO_PROXY.open(f"{url}/health", timeout=timeout) as answer:
            return answer.status == 200
    except (OSError, http.client.HTTPException):  # URLError and timeouts are OSErrors
        return False


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):  # gone, or the number is someone else's now
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server_process(port: int, log: IO, new_session: bool) -> subprocess.Popen:
    """`prefect server start` on loopback (analytics off: with it on, SQLite was seen to lock)."""
    url = f"http://127.0.0.1:{port}/api"
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_API_URL=url)
    return subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            env=env, start_new_session=new_session)


def wait_until_healthy(url: str, process: subprocess.Popen, log_name: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not healthy(url):
        if process.poll() is not None:
            raise RuntimeError(f"the Prefect server exited with {process.returncode}; see {log_name}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Prefect server did not answer within {timeout:.0f} s; see {log_name}")
        time.sleep(0.2)


def stop_process_group(process: subprocess.Popen, grace: float) -> None:
    """SIGTERM the process's group (started with `start_new_session=True`); SIGKILL after `grace` s."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def api_url_in_effect(url: str) -> Iterator[str]:
    """Make `url` Prefect's API for this process (every thread) and its children; logs sent at the end."""
    from prefect.context import refresh_global_settings_context
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url  # children (Dask workers) and threads that copy no context
    refresh_global_settings_context()
    try:
        with temporary_settings({PREFECT_API_URL: url}):
            try:
                yield url
            finally:  # buffered logs and events (task run states), while the server is still there
                notes = logging.getLogger("EventsWorker")  # "Still processing items: 3 items remaining..."
                level = notes.level
                notes.setLevel(logging.ERROR)
                try:
                    APILogWorker.drain_all(timeout=5)
                    EventsWorker.drain_all(timeout=5)
                finally:
                    notes.setLevel(level)
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous
        refresh_global_settings_context()


@contextmanager
def temporary_server(timeout: float = START_TIMEOUT) -> Iterator[str]:
    """A `prefect server start` for the duration, in its own session (Ctrl-C does not reach it),
    stopped last: after the flow has ended and its logs are sent."""
    log = tempfile.NamedTemporaryFile(prefix="prefect-server-", suffix=".log", delete=False)
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    process = start_server_process(port, log, new_session=True)
    try:
        wait_until_healthy(url, process, log.name, timeout)
    except BaseException:
        stop_process_group(process, STOP_GRACE)
        log.close()  # kept: the error names it
        raise
    try:
        with api_url_in_effect(url):
            yield url
    finally:
        stop_process_group(process, STOP_GRACE)
        log.close()
        os.unlink(log.name)


def idle_minutes() -> float:
    value = os.environ.get(IDLE_MINUTES_ENV, "").strip()
    try:
        minutes = float(value) if value else DEFAULT_IDLE_MINUTES
    except ValueError:
        minutes = -1.0
    if minutes < 0:
        raise ValueError(f"{IDLE_MINUTES_ENV} must be a number of minutes >= 0 (0: a server for each run), "
                         f"not {value!r}")
    return minutes


def prefect_home() -> Path:
    """PREFECT_HOME as Prefect resolves it (default ~/.prefect), created if missing."""
    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


@contextmanager
def prefect_backend() -> Iterator[str]:
    """The Prefect API a CLI run uses: PREFECT_API_URL if set; else the shared server of PREFECT_HOME
    (started if none answers), held for the run; with BATCHFLOWS_SERVER_IDLE_MINUTES=0 a server of
    the run's own, stopped last."""
    with _server_for_the_run() as url, _heartbeats_off_unless_configured():
        yield url


@contextmanager
def _server_for_the_run() -> Iterator[str]:
    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        yield configured
        return
    minutes = idle_minutes()
    if not minutes:
        with temporary_server() as url:
            yield url
        return
    files = ServerFiles(prefect_home())
    with open(files.lock, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)  # waits while a keeper stops the server it had
        with api_url_in_effect(shared_server(files, minutes).url) as url:
            yield url


@contextmanager
def _heartbeats_off_unless_configured() -> Iterator[None]:
    """A flow run's heartbeat thread sleeps in 1 s steps and is joined at the end of the run: up to
    1 s per CLI run. A CLI run records its own end (also on Ctrl-C and SIGTERM), so its heartbeats
    are off unless PREFECT_FLOWS_HEARTBEAT_FREQUENCY is set."""
    if os.environ.get("PREFECT_FLOWS_HEARTBEAT_FREQUENCY") or os.environ.get("PREFECT_RUNNER_HEARTBEAT_FREQUENCY"):
        yield
        return
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def shared_server(files: ServerFiles, minutes: float) -> ServerState:
    """The running shared server of `files.home` (waited for if it is starting), or a new one; one
    run at a time decides."""
    with open(files.start_lock, "a+") as start_lock:
        fcntl.flock(start_lock, fcntl.LOCK_EX)
        state = ServerState.read(files.state)
        if state is not None:
            ready = _published(files, state.keeper_pid, lambda: _is_keeper(state.keeper_pid))
            if ready is not None and any(healthy(ready.url) for _ in range(3)):
                return ready
            if group_alive(state.keeper_pid):
                os.killpg(state.keeper_pid, signal.SIGKILL)  # it no longer answers
        files.state.unlink(missing_ok=True)
        return _start_keeper(files, minutes)


def _is_keeper(pid: int) -> bool:
    try:
        return b"tasks.engine.server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _published(files: ServerFiles, keeper_pid: int, alive: Callable[[], bool]) -> ServerState | None:
    """The keeper's state once its server answers (it publishes the URL then); None if it ends first."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        state = ServerState.read(files.state)
        if state is not None and state.keeper_pid == keeper_pid and state.url:
            return state
        if not alive() or time.monotonic() > deadline:
            return None
        time.sleep(0.1)


def _start_keeper(files: ServerFiles, minutes: float) -> ServerState:
    project = str(Path(__file__).resolve().parents[2])  # the keeper imports this very code
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [project, os.environ.get("PYTHONPATH")])))
    with open(files.log, "w") as log:
        keeper = subprocess.Popen([sys.executable, "-m", "tasks.engine.server", "keep", str(files.home),
                                   str(minutes * 60)], stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=subprocess.STDOUT, env=env, cwd=files.home, start_new_session=True)
    state = _published(files, keeper.pid, lambda: keeper.poll() is None)
    if state is not None:
        return state
    if keeper.poll() is None:
        os.killpg(keeper.pid, signal.SIGKILL)
        raise RuntimeError(f"the Prefect server did not answer within {START_TIMEOUT:.0f} s; see {files.log}")
    raise RuntimeError(f"the Prefect server did not start (exit {keeper.returncode}); see {files.log}")


def keep(home: Path, idle_seconds: float) -> int:
    """The keeper: start the server, publish its address once it answers, stop it when no run has
    held the lock for `idle_seconds`, when signalled (`batchflows server stop`), or when it dies."""
    files = ServerFiles(home)
    stop_requested: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda number, _frame: stop_requested.append(number))
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    server = start_server_process(port, sys.stdout, new_session=False)
    state = ServerState(os.getpid(), server.pid, "", idle_seconds / 60)
    state.write(files.state)  # starting: `server stop` finds it, a run waits for it
    deadline = time.monotonic() + START_TIMEOUT
    with open(files.lock, "a+") as lock:  # closed (unlocked) after the server has stopped
        try:
            while not healthy(url):
                if stop_requested or server.poll() is not None or time.monotonic() > deadline:
                    print(f"keeper: the server did not start (exit {server.poll()}, signals {stop_requested})",
                          flush=True)
                    return 1
                time.sleep(0.2)
            dataclasses.replace(state, url=url).write(files.state)
            print(f"keeper: serving {url}, stopping after {idle_seconds:g} s without a run", flush=True)
            print(f"keeper: stopping ({_serve(lock, server, idle_seconds, stop_requested)})", flush=True)
            return 0
        finally:
            if (ServerState.read(files.state) or state).keeper_pid == os.getpid():
                files.state.unlink(missing_ok=True)
            _stop(server)


def _serve(lock: IO, server: subprocess.Popen, idle_seconds: float, stop_requested: list[int]) -> str:
    """Until a signal, the server's end, or `idle_seconds` with no run holding the lock (returned
    while holding it exclusively: a run that comes now waits, then starts a new server)."""
    idle_since = time.monotonic()
    while not stop_requested and server.poll() is None:
        time.sleep(POLL_SECONDS)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a run is using the server
            idle_since = time.monotonic()
            continue
        if time.monotonic() - idle_since >= idle_seconds:
            return "idle"
        fcntl.flock(lock, fcntl.LOCK_UN)
    return f"signal {stop_requested[0]}" if stop_requested else f"the server exited with {server.returncode}"


def _stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def server_command(action: str) -> int:
    """`batchflows server status|stop`: the shared server of this PREFECT_HOME."""
    files = ServerFiles(prefect_home())
    state = ServerState.read(files.state)
    if state is None or not group_alive(state.keeper_pid):
        print(f"no batchflows Prefect server runs for PREFECT_HOME={files.home}")
        return 0
    ui = state.url.removesuffix("/api")
    if action == "status":
        where = f"UI {ui}, API {state.url}" if state.url and healthy(state.url) else "starting or not answering"
        print(f"Prefect server for PREFECT_HOME={files.home}: {where} (keeper pid {state.keeper_pid}; stops after "
              f"{state.idle_minutes:g} min without a run; log {files.log})")
        return 0
    os.killpg(state.keeper_pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE + 10
    while group_alive(state.keeper_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if group_alive(state.keeper_pid):
        os.killpg(state.keeper_pid, signal.SIGKILL)
    files.state.unlink(missing_ok=True)
    print(f"stopped the Prefect server at {ui or '(starting)'}")
    return 0

if __name__ == "__main__":
    if sys.argv[1:2] != ["keep"] or len(sys.argv) != 4:
        sys.exit("usage: python -m tasks.engine.server keep PREFECT_HOME IDLE_SECONDS (started by the CLI)")
    sys.exit(keep(Path(sys.argv[2]), float(sys.argv[3])))
