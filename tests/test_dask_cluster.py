"""An existing Dask cluster (`dask scheduler` + two `dask worker` processes on loopback) runs the chunks."""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from distributed import Client
from test_card_flow import run_flow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def dask_cluster(tmp_path):
    dask = str(Path(sys.executable).parent / "dask")
    address = f"tcp://127.0.0.1:{free_port()}"
    processes = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                                   "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    time.sleep(1)
    for n in range(2):  # the workers get PREFECT_API_URL from this environment, not the CARD_API_KEY
        env = {k: v for k, v in os.environ.items() if k != "CARD_API_KEY"}
        processes.append(subprocess.Popen(
            [dask, "worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard", "--name", f"w{n}"],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    with Client(address, timeout=60) as client:
        client.wait_for_workers(2, timeout=60)
        pids = set(client.run(os.getpid).values())
    yield address, pids
    for process in reversed(processes):
        process.terminate()
        process.wait(20)


def test_existing_cluster_runs_the_chunks_within_the_rate_limit(workspace, emulator, dask_cluster):
    address, worker_pids = dask_cluster
    emulator.configure("cards", latency=0.05, rate_limit=40)
    figures, out, _ = run_flow(workspace, emulator, rows=400, runner=address,
                               processing={"chunk_size": 50, "concurrency": 40, "rate_limit_per_minute": 2400})
    assert len(out) == 400 and (out.status == "ok").all()
    stats = emulator.stats("cards")
    assert stats["max_1s"] <= 40 and stats["statuses"] == {"200": 400}
    used = {int(worker.rsplit(":", 1)[1]) for worker in figures["chunks_per_worker"]}
    assert used == worker_pids  # both cluster workers ran chunks, nothing ran in this process
    assert sum(figures["chunks_per_worker"].values()) == figures["chunks"] == 8
    with Client(address, timeout=60) as client:  # the workers' own count of the tasks they executed
        executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert len(executed) == 2 and min(executed.values()) > 0 and sum(executed.values()) == 8
    emulator.configure("cards", rate_limit=None)  # the same input on threads, from scratch (own work dir)
    _, threaded, _ = run_flow(workspace, emulator, runner="thread", out="threads.csv",
                              processing={"chunk_size": 50, "work_dir": str(workspace / "thread-work")})
    pd.testing.assert_frame_equal(out, threaded)
    assert emulator.stats("cards")["total"] == 800  # the thread run sent its own 400 requests
