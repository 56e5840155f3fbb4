"""Choose the task runner from a string: `thread`, `dask` (local processes) or `tcp://host:port`."""
from __future__ import annotations

import os

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
            "or use the batchflows CLI, which starts one (tasks/engine/server.py)"
        )
    from prefect_dask import DaskTaskRunner

    if runner.startswith("tcp://"):
        return DaskTaskRunner(address=runner)
    n = parallel_chunks(runner, workers)
    return DaskTaskRunner(cluster_kwargs={"n_workers": n, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": ":0"})
