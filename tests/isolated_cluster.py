"""A Dask cluster whose workers share nothing with the test process but the network.

`dask scheduler` runs on 127.0.0.1 (a free port); each `dask worker` (`--nthreads 2 --nworkers 1
--no-dashboard --name wN`) starts under `unshare --mount --uts --fork` from a shell script generated here
(`<logs>/wN.sh`, output in `<logs>/wN.log`). Inside its namespaces the script makes every mount private,
mounts a fresh tmpfs over /tmp, /home, the test process's HOME and the work root (`work_root`: the
folder under which the tests' BATCHFLOWS_WORK_DIR live, the pytest base temp dir), binds the project
checkout, the venv, the Python install and the shared folder (`shared`: what a real cluster would
mount from the network, e.g. the file tree of file-metadata) back read-only (from directory fds opened
before the tmpfs hid them: `mount --no-canonicalize --bind /proc/self/fd/N DIR`, then
`remount,bind,ro`), sets the
hostname to the worker's name and HOME to an empty `/home/wN`. The network namespace is shared: workers
reach the scheduler, the Prefect server and the emulators on loopback. Their environment is the test
process's without secrets (names ending in KEY, TOKEN, SECRET, PASSWORD: secrets travel with the task)
and without the test process's own state (PREFECT_HOME, BATCHFLOWS_WORK_DIR, TMPDIR), plus
PREFECT_API_URL and PYTHONPATH=<project>. Needs root (CAP_SYS_ADMIN); CI runs as root.

API (pytest fixtures in tests/conftest.py: `isolated_cluster`, started once per session on first use
and stopped at its end; `fresh_isolated_cluster`, the same cluster for one test with every worker up):
- `IsolatedCluster.start(prefect_api_url, work_root, logs, shared, workers=2)` -> cluster; `close()` (or
  `with`) stops every process it started. `IsolationUnavailable` (one line) when the machine cannot isolate.
- `cluster.shared`: a folder the test process writes and every worker reads, live, at the same path.
- `cluster.address`: `tcp://127.0.0.1:PORT` (the flows' `--runner`); `cluster.client()`: a Client
  (context manager, not set as the default).
- `cluster.workers["w1"]`: `IsolatedWorker` with `name`, `hostname` (what `socket.gethostname()` says
  in it), `address`, `pid` (the `dask worker` process: `os.kill(pid, SIGKILL)` loses the whole worker
  like a dead machine: its task process exits with it), `task_pid` (the process running the tasks,
  `os.getpid()` in a task), `alive()`, `kill()` (SIGKILL, waits until every process of it is gone),
  `stop()` (SIGTERM, then SIGKILL after a grace period).
- `cluster.restart_worker(name)`: stop it if alive, start it again (fresh tmpfs, same name and hostname,
  environment taken from os.environ now); `cluster.ensure_workers()`: restart every worker not up;
  `cluster.scheduler_workers()`: name -> address of the workers the scheduler lists now;
  `cluster.wait_for_scheduler_workers(names)`: until it lists exactly those.
Start and restart from the main thread: each launcher dies with the thread that started it
(PR_SET_PDEATHSIG), so nothing outlives a killed test run.
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from distributed import Client

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DASK = str(Path(sys.executable).parent / "dask")
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)$")
TEST_PROCESS_STATE = frozenset({"PREFECT_HOME", "BATCHFLOWS_WORK_DIR", "TMPDIR", "PWD", "OLDPWD"})
STARTUP_TIMEOUT = 90.0
STOP_GRACE = 20.0
PROBE = "mount --make-rprivate / && mount -t tmpfs probe /tmp && hostname isolation-probe"


class IsolationUnavailable(RuntimeError):
    """This machine cannot give a worker its own mounts and hostname (no root / CAP_SYS_ADMIN, no util-linux)."""


def require_isolation() -> None:
    """Try what a worker's setup does, in throwaway namespaces; raise IsolationUnavailable saying why not."""
    try:
        probe = subprocess.run(["unshare", "--mount", "--uts", "--fork", "sh", "-c", PROBE],
                               capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise IsolationUnavailable("isolated_cluster needs util-linux's `unshare`, which is not installed") from None
    if probe.returncode:
        reason = (probe.stderr.strip().splitlines() or [f"exit status {probe.returncode}"])[-1]
        raise IsolationUnavailable(f"isolated_cluster needs root (CAP_SYS_ADMIN) to give each Dask worker its own "
                                   f"mounts and hostname, and `unshare --mount --uts` failed here: {reason}")


@dataclass(frozen=True)
class WorkerLayout:
    """What a worker sees: a fresh tmpfs over each `hidden` folder, each `read_only` folder bound back."""
    hidden: tuple[Path, ...]
    read_only: tuple[Path, ...]

    @classmethod
    def for_tests(cls, work_root: Path, shared: Path) -> WorkerLayout:
        hidden = {Path("/tmp"), Path("/home"), Path.home().resolve(), work_root.resolve()}
        seen = {PROJECT_ROOT, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), shared.resolve()}
        outermost = {path for path in seen if not any(other in path.parents for other in seen)}
        return cls(tuple(sorted(hidden)), tuple(sorted(outermost)))

    def setup_script(self, hostname: str, home: str) -> str:
        """Shell commands run inside the new namespaces, then `exec "$@"` (the worker command)."""
        missing = [str(path) for path in self.hidden + self.read_only if not path.is_dir()]
        if missing or len(self.read_only) > 7:  # sh redirections take fds 3-9
            raise ValueError(f"every folder must exist (missing: {missing}), at most 7 bound back "
                             f"({len(self.read_only)})")
        fds = {path: 3 + n for n, path in enumerate(self.read_only)}
        lines = ["set -eu", "mount --make-rprivate /"]
        lines += [f"exec {fd}<{shlex.quote(str(path))}" for path, fd in fds.items()]
        for path in sorted(self.hidden + self.read_only, key=lambda path: len(path.parts)):  # outer ones first
            target = shlex.quote(str(path))
            if path in fds:  # mkdir only happens inside a tmpfs: every target exists on the host
                lines += [f"mkdir -p {target}", f"mount --no-canonicalize --bind /proc/self/fd/{fds[path]} {target}",
                          f"mount -o remount,bind,ro {target}"]
            else:
                mode = "1777" if path == Path("/tmp") else "0755"
                lines += [f"mkdir -p {target}", f"mount -t tmpfs -o mode={mode} isolated {target}"]
        lines += [f"exec {fd}<&-" for fd in fds.values()]
        lines += [f"hostname {shlex.quote(hostname)}", f"mkdir -p {shlex.quote(home)}", f"cd {shlex.quote(home)}",
                  'exec "$@"']
        return "\n".join(lines) + "\n"


def worker_environment(base: Mapping[str, str], prefect_api_url: str, home: str) -> dict[str, str]:
    """`base` without secrets and the test process's own state, plus what a worker machine would set."""
    kept = {name: value for name, value in base.items()
            if not SECRET_NAME.search(name) and name not in TEST_PROCESS_STATE}
    return {**kept, "HOME": home, "PREFECT_API_URL": prefect_api_url, "PYTHONPATH": str(PROJECT_ROOT)}


def _parent_death_signal() -> None:
    """In the child before exec: SIGKILL it when the thread that started it dies."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class IsolatedWorker:
    """One `dask worker` in its own mount and UTS namespaces."""
    name: str
    hostname: str
    address: str
    pid: int
    task_pid: int
    launcher: subprocess.Popen = field(repr=False)

    def processes(self) -> list[psutil.Process]:
        """Every process of this worker still running (launcher, worker, task process, their children)."""
        try:
            root = psutil.Process(self.launcher.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def alive(self) -> bool:
        try:
            return psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def kill(self) -> None:
        """SIGKILL, as if the machine died; return once none of its processes is left."""
        if not self._gone_within(self._signal(signal.SIGKILL, everyone=True), STOP_GRACE):
            raise RuntimeError(f"worker {self.name} still has processes after SIGKILL: {self.processes()}")

    def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM to the `dask worker` (it closes its task process); SIGKILL whatever is left after `grace`."""
        self._finish_stop(self._signal(signal.SIGTERM, everyone=False), grace)

    def _signal(self, signum: int, everyone: bool) -> list[psutil.Process]:
        """Send `signum` to the `dask worker` (or to every process of it); the processes below the launcher."""
        processes = self.processes()
        for process in processes if everyone else [p for p in processes if p.pid == self.pid]:
            with suppress(psutil.NoSuchProcess):
                process.send_signal(signum)
        return processes[1:]

    def _finish_stop(self, descendants: list[psutil.Process], grace: float) -> None:
        if not self._gone_within(descendants, grace):
            self.kill()

    def _gone_within(self, descendants: list[psutil.Process], grace: float) -> bool:
        try:
            self.launcher.wait(grace)  # unshare exits when its child, the `dask worker`, does
        except subprocess.TimeoutExpired:
            return False
        _, left = psutil.wait_procs(descendants, timeout=grace)
        return not left


class IsolatedCluster:
    """A scheduler on loopback and workers that share only the network with this process."""

    def __init__(self, address: str, scheduler: subprocess.Popen, layout: WorkerLayout, prefect_api_url: str,
                 logs: Path, shared: Path, names: tuple[str, ...]):
        self.address = address
        self.shared = shared
        self.workers: dict[str, IsolatedWorker] = {}
        self._scheduler = scheduler
        self._layout = layout
        self._prefect_api_url = prefect_api_url
        self._logs = logs
        self._names = names

    @classmethod
    def start(cls, prefect_api_url: str, work_root: Path, logs: Path, shared: Path,
              workers: int = 2) -> IsolatedCluster:
        require_isolation()
        layout = WorkerLayout.for_tests(work_root, shared)
        port = _free_port()
        env = {name: value for name, value in os.environ.items() if not SECRET_NAME.search(name)}
        with open(logs / "scheduler.log", "ab") as log:
            scheduler = subprocess.Popen(
                [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                env={**env, "PREFECT_API_URL": prefect_api_url}, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_parent_death_signal)
        cluster = cls(f"tcp://127.0.0.1:{port}", scheduler, layout, prefect_api_url, logs, shared,
                      tuple(f"w{n}" for n in range(1, workers + 1)))
        try:
            cluster._start_workers(cluster._names)
        except BaseException:
            cluster.close()
            raise
        return cluster

    @contextmanager
    def client(self, timeout: float = STARTUP_TIMEOUT) -> Iterator[Client]:
        with Client(self.address, timeout=timeout, set_as_default=False) as client:
            yield client

    def scheduler_workers(self) -> dict[str, str]:
        """Worker name -> address, as the scheduler lists them now."""
        with self.client() as client:
            listed = client.scheduler_info(n_workers=-1)["workers"]
        return {str(info["name"]): address for address, info in listed.items()}

    def wait_for_scheduler_workers(self, names: set[str], timeout: float = STARTUP_TIMEOUT,
                                   launchers: Mapping[str, subprocess.Popen] | None = None) -> dict[str, str]:
        """Poll until the scheduler lists exactly `names`; name -> address. Fails early if a launcher exits."""
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while True:
                listed = {str(info["name"]): address
                          for address, info in client.scheduler_info(n_workers=-1)["workers"].items()}
                if set(listed) == names:
                    return listed
                self._check_running(launchers or {})
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the scheduler lists workers {sorted(listed)}, not {sorted(names)}, after "
                                       f"{timeout:.0f} s; see the logs in {self._logs}")
                time.sleep(0.2)

    def restart_worker(self, name: str) -> IsolatedWorker:
        worker = self.workers.pop(name, None)
        if worker is not None:
            worker.stop()
        self._start_workers((name,))
        return self.workers[name]

    def ensure_workers(self) -> None:
        """Restart every worker that is not running or not listed by the scheduler."""
        listed = self.scheduler_workers()
        down = [name for name in self._names
                if name not in self.workers or not self.workers[name].alive() or name not in listed]
        for name in down:
            worker = self.workers.pop(name, None)
            if worker is not None:
                worker.kill()
        if down:
            self._start_workers(tuple(down))

    def close(self) -> None:
        """Stop the workers, then the scheduler; nothing started here is left running."""
        stopping = [(worker, worker._signal(signal.SIGTERM, everyone=False)) for worker in self.workers.values()]
        for worker, descendants in stopping:  # they close side by side
            worker._finish_stop(descendants, STOP_GRACE)
        self.workers.clear()
        if self._scheduler.poll() is None:
            os.killpg(self._scheduler.pid, signal.SIGTERM)
            try:
                self._scheduler.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                os.killpg(self._scheduler.pid, signal.SIGKILL)
                self._scheduler.wait()

    def __enter__(self) -> IsolatedCluster:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _start_workers(self, names: tuple[str, ...]) -> None:
        """Launch the workers at once, then wait until the scheduler lists them all."""
        others = set(self.workers)
        self.wait_for_scheduler_workers(others)  # a lost worker's name is free again
        launchers = {name: self._launch(name) for name in names}
        try:
            addresses = self.wait_for_scheduler_workers(others | set(names), launchers=launchers)
            with self.client() as client:
                task_pids = client.run(os.getpid, workers=[addresses[name] for name in names])
        except BaseException:
            for launcher in launchers.values():  # its own process group: unshare, the worker, its task process
                with suppress(ProcessLookupError):
                    os.killpg(launcher.pid, signal.SIGKILL)
                launcher.wait()
            raise
        for name, launcher in launchers.items():
            namespace_root = psutil.Process(launcher.pid).children()[0]  # unshare's fork, exec'ed into dask
            self.workers[name] = IsolatedWorker(name, name, addresses[name], namespace_root.pid,
                                                task_pids[addresses[name]], launcher)

    def _launch(self, name: str) -> subprocess.Popen:
        home = f"/home/{name}"
        script = self._logs / f"{name}.sh"
        script.write_text(self._layout.setup_script(name, home))
        command = [DASK, "worker", self.address, "--name", name, "--host", "127.0.0.1", "--nthreads", "2",
                   "--nworkers", "1", "--no-dashboard"]
        with open(self._logs / f"{name}.log", "ab") as log:
            return subprocess.Popen(["unshare", "--mount", "--uts", "--fork", "--kill-child=SIGKILL",
                                     "sh", str(script), *command],
                                    env=worker_environment(os.environ, self._prefect_api_url, home),
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=_parent_death_signal)

    def _check_running(self, launchers: Mapping[str, subprocess.Popen]) -> None:
        watched = {"scheduler": self._scheduler, **launchers}
        for name, process in watched.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode} while starting; "
                                   f"see {self._logs}/{name}.log")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
