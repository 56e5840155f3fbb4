"""Choose the task runner from a string: `thread`, `dask` (local processes) or `tcp://host:port`."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from typing import Iterator

from prefect.settings import PREFECT_API_URL
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner


def is_dask(runner: str) -> bool:
    return runner == "dask" or runner.startswith("tcp://")


def parallel_chunks(runner: str, workers: int | None, task_runner: TaskRunner | None = None) -> int:
    """How many chunks run at once (the run's concurrency is split between them): `workers`, else 4
    threads, else the threads the Dask cluster really has."""
    if workers:
        return workers
    if runner == "thread":
        return 4
    if task_runner is not None:
        return max(1, sum(task_runner.client.nthreads().values()))
    return max(2, os.cpu_count() or 2)


def make_task_runner(runner: str, workers: int | None = None) -> TaskRunner:
    if runner == "thread":
        return ThreadPoolTaskRunner(max_workers=parallel_chunks(runner, workers))
    if not is_dask(runner):
        raise ValueError(f"runner must be 'thread', 'dask' or a tcp:// Dask scheduler address, not {runner!r}")
    if not PREFECT_API_URL.value():
        raise RuntimeError(
            "the Dask runners need a real Prefect server (in ephemeral mode every Dask worker starts "
            "its own): run `prefect server start` and export PREFECT_API_URL=http://127.0.0.1:4200/api, "
            "or use the batchflows CLI, which starts one for the run"
        )
    from prefect_dask import DaskTaskRunner

    if runner.startswith("tcp://"):
        return DaskTaskRunner(address=runner)
    n = parallel_chunks(runner, workers)
    return DaskTaskRunner(cluster_kwargs={"n_workers": n, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": ":0"})


@contextmanager
def local_prefect_server(port: int = 0, timeout: float = 120.0) -> Iterator[str]:
    """Start `prefect server start` on loopback for the duration (Dask workers need a real server)."""
    import httpx
    from prefect.settings import temporary_settings

    if not port:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    log = tempfile.NamedTemporaryFile(prefix="prefect-server-", suffix=".log", delete=False)
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_API_URL=url)
    process = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"prefect server exited with {process.returncode}; see {log.name}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"prefect server did not answer within {timeout:.0f} s; see {log.name}")
            time.sleep(0.5)
        previous = os.environ.get("PREFECT_API_URL")
        os.environ["PREFECT_API_URL"] = url  # for child processes (Dask workers)
        try:
            with temporary_settings({PREFECT_API_URL: url}):
                yield url
        finally:
            if previous is None:
                os.environ.pop("PREFECT_API_URL", None)
            else:
                os.environ["PREFECT_API_URL"] = previous
    finally:
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=5)  # send buffered logs while the server is still there
        stop_process_group(process, 20)
        log.close()


def stop_process_group(process: subprocess.Popen, grace: float) -> None:
    """SIGTERM the process's group (started with `start_new_session=True`); SIGKILL after `grace` s."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
