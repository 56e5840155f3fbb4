"""Test fixtures: one real Prefect server (for every test outside tests/unit/) and one emulator process
for the whole session."""
import os
import tempfile

_home = tempfile.mkdtemp(prefix="batchflows-test-prefect-")
os.environ["PREFECT_HOME"] = _home  # isolated Prefect state, set before prefect is imported
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.pop("PREFECT_API_URL", None)

import json  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from emulators import Emulator  # noqa: E402
from tasks.engine.server import temporary_server  # noqa: E402

API_KEY = "test-key-Zq8v1Lw5"


@pytest.fixture(scope="session")
def prefect_server():
    """A real `prefect server start` (Dask workers need one; it also makes flow calls fast)."""
    with temporary_server() as url:
        yield url


@pytest.fixture(autouse=True)
def _prefect_for_end_to_end_tests(request):
    """Every test outside tests/unit/ runs against the session's Prefect server; unit tests pay for none."""
    if "unit" not in request.node.path.parent.parts[-1:]:
        request.getfixturevalue("prefect_server")


@pytest.fixture(scope="session")
def emulator_process():
    with Emulator({"cards": {"api_key": API_KEY}}) as emulator:
        yield emulator


@pytest.fixture
def emulator(emulator_process, monkeypatch):
    """The session's emulator with fresh accounting and start-up settings, and the key in the env."""
    emulator_process.reset()
    monkeypatch.setenv("CARD_API_KEY", API_KEY)
    return emulator_process


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A fresh work directory (staged chunks, journals, rate-limit state) for this test."""
    monkeypatch.setenv("BATCHFLOWS_WORK_DIR", str(tmp_path / "work"))
    return tmp_path


BOOK_KEYS = {"geocoding": "g-key-Tq72Pz", "messaging": "m-key-Wb58Ns"}
BOOK_ENV = {"GOOGLE_MAPS_API_KEY": BOOK_KEYS["geocoding"], "MESSAGING_API_KEY": BOOK_KEYS["messaging"]}


@pytest.fixture
def books(emulator, monkeypatch, workspace):
    """Book requests: the emulator with keys, a history of 2 000 requests and a batch of 200 with bad rows."""
    from tasks.samples.book_requests import history_frame, new_requests_frame

    for api, key in BOOK_KEYS.items():
        emulator.configure(api, api_key=key)
    for name, value in BOOK_ENV.items():
        monkeypatch.setenv(name, value)
    history, people = history_frame(2000, seed=3)
    batch = new_requests_frame(200, history, people, seed=4)
    history.drop(columns=["entity", "phone_e164"]).to_csv(workspace / "history.csv", index=False)
    requests = batch.drop(columns=["entity", "phone_e164"])
    requests.loc[3, "phone"] = "555-CALL-NOW"
    requests.loc[4, "address"] = "9 Elm Street " * 400
    requests.loc[5, "address"] = ""
    requests.loc[6, "address"] = "qwzxv 12 kjhgf"
    requests.to_csv(workspace / "requests.csv", index=False)
    with open(workspace / "requests.csv", "ab") as handle:  # a row that is not UTF-8
        handle.write(b"Jos\xe9 Ruiz,312-555-0188,12 Oak St Chicago IL 60601,Emma,2026-11-05\n")
    return workspace, batch, history


@pytest.fixture(scope="session")
def isolated_cluster(prefect_server, tmp_path_factory):
    """A Dask scheduler and workers w1, w2 that share only the network with the tests (tests/isolated_cluster.py).

    Started on first use, stopped at the end of the session. The tests' work dirs (under the pytest base
    temp dir), /tmp and HOME are empty private tmpfs in each worker; the code and `cluster.shared` are
    there read-only."""
    from isolated_cluster import IsolatedCluster, IsolationUnavailable

    try:
        cluster = IsolatedCluster.start(prefect_server, tmp_path_factory.getbasetemp(),
                                        tmp_path_factory.mktemp("isolated-cluster-logs"),
                                        tmp_path_factory.mktemp("isolated-cluster-shared"))
    except IsolationUnavailable as error:  # a failure, not a skip: these tests must run in CI
        raise pytest.fail.Exception(str(error), pytrace=False) from None
    with cluster:
        yield cluster


@pytest.fixture
def fresh_isolated_cluster(isolated_cluster):
    """The session's isolated cluster with every worker up: one a previous test killed or stopped is restarted."""
    isolated_cluster.ensure_workers()
    return isolated_cluster


def write_config(path: Path, base_url: str, **processing) -> Path:
    settings = {"concurrency": 40, "rate_limit_per_minute": None, "chunk_size": 100, **processing}
    timeout = settings.pop("timeout", 5)
    path.write_text(json.dumps({"api": {"base_url": base_url, "api_key_env": "CARD_API_KEY", "timeout": timeout},
                                "processing": settings}))
    return path


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The `batchflows` CLI in a child process, against the session's Prefect server."""
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def latest_run_artifacts(run_id: str | None = None) -> dict[str, object]:
    """Artifact key -> data, for the flow run `run_id` or the most recent one on the session's server."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    async def read():
        async with get_client() as client:
            run = run_id or (await client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1, offset=0))[0].id
            artifacts = await client.read_artifacts(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run])), limit=50, offset=0)
            return {a.key: a.data for a in artifacts}

    return asyncio.run(read())


def read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix == ".xlsx":
        return pd.read_excel(path, dtype=str, keep_default_na=False)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def kill_when(command: list[str], reached, env: dict | None = None, timeout: float = 120) -> None:
    """Start the command in its own process group; SIGKILL the group once `reached()` is true."""
    victim = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not reached() and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()


def server_texts() -> list[str]:
    """Every log message, artifact and flow-run parameter set on the session's Prefect server."""
    import asyncio

    from prefect.client.orchestration import get_client

    async def read():
        async with get_client() as client:
            logs = await client.read_logs(limit=200, offset=0)
            artifacts = await client.read_artifacts(limit=200, offset=0)
            runs = await client.read_flow_runs(limit=50, offset=0)
        return ([log.message for log in logs], [str(a.data) + str(a.description) for a in artifacts],
                [str(run.parameters) for run in runs])

    logs, artifacts, parameters = asyncio.run(read())
    assert logs and artifacts and parameters
    return logs + artifacts + parameters


@pytest.fixture(scope="session")
def s3_server_process():
    """moto's S3-compatible server on loopback, for the whole session (tests/s3_server.py)."""
    from s3_server import S3Server

    with S3Server() as server:
        yield server


@pytest.fixture
def s3(s3_server_process, monkeypatch):
    """The session's S3 server with this test's env pointing s3fs at it (no cached connection kept)."""
    import s3fs

    for name, value in s3_server_process.env.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()
    yield s3_server_process
    s3fs.S3FileSystem.clear_instance_cache()
