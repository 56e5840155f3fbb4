"""Ctrl-C and SIGTERM in the default mode (no PREFECT_API_URL): the real CLI in a child process with
its own PREFECT_HOME, against the card emulator. It exits at once with one line, leaves no process
behind but the shared Prefect server, the flow run is Crashed in that server's database, and a
rerun sends only the rows the interrupted run had not finished (plus at most its requests in flight).
"""
import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import read_table, write_config

from tasks.engine.server import ServerFiles, ServerState
from tasks.samples.tables import write_users

ROWS = 3000
CHUNK = 750  # 4 chunks at once, 5 requests in flight each: a chunk takes 15 s, longer than the deadline
CONCURRENCY = 20  # requests in flight for the whole run: what an interruption may leave unanswered
LATENCY = 0.1
STOP_DEADLINE = 10  # seconds from the signal to the CLI's exit


def cli_env(home: Path, work: Path, mark: str, **extra: str) -> dict[str, str]:
    """The user's environment: no PREFECT_API_URL; a mark to find every process the run started."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    return {**env, "PREFECT_HOME": str(home), "BATCHFLOWS_WORK_DIR": str(work), "PREFECT_LOGGING_LEVEL": "WARNING",
            "BATCHFLOWS_TEST_MARK": mark, **extra}


def processes_with(mark: str) -> dict[int, int]:
    """pid -> session id of every live process whose environment holds `mark`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if f"BATCHFLOWS_TEST_MARK={mark}".encode() in (entry / "environ").read_bytes():
                    found[int(entry.name)] = os.getsid(int(entry.name))
            except OSError:
                continue
    return found


def flow_run_states(api_url: str) -> list[str]:
    """The state of every flow run on that server, oldest first."""
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.sorting import FlowRunSort

    async def read():
        async with PrefectClient(api_url) as client:
            runs = await client.read_flow_runs(sort=FlowRunSort.START_TIME_ASC)
            return [run.state_type.value for run in runs]

    return asyncio.run(read())


def cards_command(workspace: Path, emulator) -> list[str]:
    users = write_users(workspace / "users.csv", ROWS)
    config = write_config(workspace / "config.json", emulator.url, concurrency=CONCURRENCY, chunk_size=CHUNK)
    return [sys.executable, "-m", "flows.cli", "card-recommendations", str(users), "-o", str(workspace / "out.csv"),
            "--config", str(config)]


def interrupt(command: list[str], env: dict, signum: int, whole_group: bool, emulator) -> subprocess.CompletedProcess:
    """Start the CLI, send `signum` once the emulator has seen 10 % of the rows (to the process
    group, as a terminal's Ctrl-C, or to the CLI alone, as a supervisor), wait for the exit."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    deadline = time.monotonic() + 180
    while emulator.stats("cards")["total"] < ROWS // 10 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()
    os.killpg(process.pid, signum) if whole_group else process.send_signal(signum)
    try:
        out, err = process.communicate(timeout=STOP_DEADLINE)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"the CLI was still running {STOP_DEADLINE} s after {signal.Signals(signum).name}: {err[-3000:]}")
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def assert_resumes(command: list[str], env: dict, workspace: Path, emulator, interrupted_at: int) -> None:
    assert interrupted_at < ROWS  # the signal stopped the sending
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    out = read_table(workspace / "out.csv")
    assert len(out) == ROWS and (out.status == "ok").all()
    stats = emulator.stats("cards")
    sent_twice = sum(n - 1 for n in stats["repeated_keys"].values())
    assert stats["distinct_keys"] == ROWS and stats["total"] == ROWS + sent_twice
    assert sent_twice <= CONCURRENCY, f"{sent_twice} users sent again; only the {CONCURRENCY} in flight may be"


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory):
    """A PREFECT_HOME whose shared server the tests' runs start; stopped at the end."""
    home = tmp_path_factory.mktemp("prefect-home")
    yield home
    subprocess.run([sys.executable, "-m", "flows.cli", "server", "stop"], env=cli_env(home, home, "-"), timeout=60)


@pytest.mark.parametrize("signum, whole_group", [(signal.SIGINT, True), (signal.SIGTERM, False)],
                         ids=["ctrl-c-to-the-group", "sigterm-to-the-cli"])
def test_a_signal_stops_the_run_at_once_and_a_rerun_resumes(signum, whole_group, shared_home, workspace, emulator):
    emulator.configure("cards", latency=LATENCY)
    mark = uuid.uuid4().hex
    command, env = cards_command(workspace, emulator), cli_env(shared_home, workspace / "work", mark)
    result = interrupt(command, env, signum, whole_group, emulator)
    interrupted_at = emulator.stats("cards")["total"]

    assert result.returncode == 128 + signum
    name = signal.Signals(signum).name
    assert result.stderr.splitlines() == [f"batchflows: interrupted by {name}; run the same command again to resume"]
    state = ServerState.read(ServerFiles(shared_home).state)
    left = {pid for pid, session in processes_with(mark).items() if session != state.keeper_pid}
    assert not left, f"left running: {left}"  # the shared server (the keeper's session) stays for the next run
    assert flow_run_states(state.url)[-1] == "CRASHED"
    assert_resumes(command, env, workspace, emulator, interrupted_at)
    assert flow_run_states(state.url)[-1] == "COMPLETED"


def test_a_server_for_this_run_only_is_stopped_last(tmp_path, workspace, emulator):
    """BATCHFLOWS_SERVER_IDLE_MINUTES=0: the run's own server records the crash, then stops with it."""
    emulator.configure("cards", latency=LATENCY)
    mark, home = uuid.uuid4().hex, tmp_path / "prefect-home"
    command = cards_command(workspace, emulator)
    env = cli_env(home, workspace / "work", mark, BATCHFLOWS_SERVER_IDLE_MINUTES="0")
    result = interrupt(command, env, signal.SIGINT, True, emulator)

    assert result.returncode == 130 and len(result.stderr.splitlines()) == 1
    assert processes_with(mark) == {}
    with sqlite3.connect(home / "prefect.db") as db:
        assert [state for (state,) in db.execute("SELECT state_type FROM flow_run")] == ["CRASHED"]
    assert not ServerFiles(home).state.exists()
    assert_resumes(command, env, workspace, emulator, emulator.stats("cards")["total"])
    assert processes_with(mark) == {}


def test_the_shared_server_is_reused_stopped_when_idle_or_on_request(tmp_path, workspace, emulator):
    mark, home = uuid.uuid4().hex, tmp_path / "prefect-home"
    command = [*cards_command(workspace, emulator), "--limit", "5"]
    env = cli_env(home, workspace / "work", mark, BATCHFLOWS_SERVER_IDLE_MINUTES="0.2")  # 12 s
    files = ServerFiles(home)

    assert subprocess.run(command, env=env, capture_output=True, text=True, timeout=300).returncode == 0
    first = ServerState.read(files.state)
    assert subprocess.run(command, env=env, capture_output=True, text=True, timeout=300).returncode == 0
    assert ServerState.read(files.state) == first  # found and used, not started again
    assert flow_run_states(first.url) == ["COMPLETED", "COMPLETED"]
    deadline = time.monotonic() + 60
    while processes_with(mark) and time.monotonic() < deadline:  # idle for 12 s: the keeper stops it
        time.sleep(0.2)
    assert processes_with(mark) == {} and not files.state.exists()

    assert subprocess.run(command, env=env, capture_output=True, text=True, timeout=300).returncode == 0
    status = subprocess.run([sys.executable, "-m", "flows.cli", "server", "status"], env=env, capture_output=True,
                            text=True, timeout=60)
    again = ServerState.read(files.state)
    assert again.keeper_pid != first.keeper_pid and f"API {again.url}" in status.stdout
    assert flow_run_states(again.url) == ["COMPLETED"] * 3  # the same database
    stop = subprocess.run([sys.executable, "-m", "flows.cli", "server", "stop"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert stop.stdout.startswith("stopped the Prefect server at ")
    assert processes_with(mark) == {} and not files.state.exists()
