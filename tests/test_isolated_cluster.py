"""The isolated cluster's workers share nothing with the test process but the network (tests/isolated_cluster.py)."""
import errno
import importlib
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import cloudpickle
import httpx
import psutil

from isolated_cluster import PROJECT_ROOT

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import the tests


def on_each_worker(cluster, function, *args) -> dict[str, object]:
    """Worker name -> what `function(*args)` returned in that worker."""
    names = {worker.address: name for name, worker in cluster.workers.items()}
    with cluster.client() as client:
        answers = client.run(function, *args)
    assert set(answers) == set(names)
    return {names[address]: answer for address, answer in answers.items()}


def on_worker(cluster, name: str, function, *args) -> object:
    with cluster.client() as client:
        address = cluster.workers[name].address
        return client.run(function, *args, workers=[address])[address]


def write_file(path: str) -> bool:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("written by a worker")
    return Path(path).exists()


def write_error(folder: str) -> int:
    """0 if a new file can be created in `folder`, else the errno."""
    try:
        Path(folder, f"probe-{uuid.uuid4().hex}").write_text("x")
    except OSError as error:
        return error.errno
    return 0


def http_status(url: str) -> int:
    return httpx.get(url, timeout=10).status_code


def module_file(name: str) -> str:
    return importlib.import_module(name).__file__


def test_the_test_process_files_are_not_on_the_workers(fresh_isolated_cluster, workspace):
    mine = [workspace / "input.csv", Path(os.environ["BATCHFLOWS_WORK_DIR"]) / "staged" / "chunk.pkl",
            Path.home() / f".isolated-cluster-probe-{uuid.uuid4().hex}"]
    try:
        for path in mine:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("written by the test process")
        seen = on_each_worker(fresh_isolated_cluster, lambda paths: [os.path.exists(p) for p in paths],
                              [str(path) for path in mine])
    finally:
        mine[-1].unlink()
    assert seen == {"w1": [False] * 3, "w2": [False] * 3}
    code = str(PROJECT_ROOT / "tasks" / "engine" / "run.py")  # what a worker must see, it does
    assert on_each_worker(fresh_isolated_cluster, os.path.exists, code) == {"w1": True, "w2": True}


def test_a_worker_files_are_its_own(fresh_isolated_cluster, workspace):
    name = f"isolated-cluster-{uuid.uuid4().hex}"
    paths = [f"/tmp/{name}", str(workspace / "work" / name), f"{os.environ['HOME']}/{name}"]
    assert [on_worker(fresh_isolated_cluster, "w1", write_file, path) for path in paths] == [True] * 3
    assert not any(os.path.exists(path) for path in paths)
    assert [on_worker(fresh_isolated_cluster, "w2", os.path.exists, path) for path in paths] == [False] * 3
    assert [on_worker(fresh_isolated_cluster, "w1", os.path.exists, path) for path in paths] == [True] * 3


def test_each_worker_has_its_own_hostname_and_home(fresh_isolated_cluster):
    hostnames = on_each_worker(fresh_isolated_cluster, socket.gethostname)
    assert hostnames == {"w1": "w1", "w2": "w2"}
    assert socket.gethostname() not in hostnames.values()
    assert {name: worker.hostname for name, worker in fresh_isolated_cluster.workers.items()} == hostnames
    homes = on_each_worker(fresh_isolated_cluster, lambda: os.environ["HOME"])
    assert homes == {"w1": "/home/w1", "w2": "/home/w2"} and os.environ["HOME"] not in homes.values()


def test_workers_import_the_project_from_this_checkout(fresh_isolated_cluster):
    for module in ("tasks.engine.run", "flows.card_recommendations", "emulators"):
        files = on_each_worker(fresh_isolated_cluster, module_file, module)
        assert files == {"w1": module_file(module), "w2": module_file(module)}
        assert Path(files["w1"]).is_relative_to(PROJECT_ROOT)


def test_the_code_and_the_venv_are_read_only_on_the_workers(fresh_isolated_cluster, workspace):
    for folder in (PROJECT_ROOT / "tasks", Path(sys.prefix)):
        errors = on_each_worker(fresh_isolated_cluster, write_error, str(folder))
        assert errors == {"w1": errno.EROFS, "w2": errno.EROFS}
    work = str(workspace / "work")  # the same call succeeds where a worker may write
    assert on_each_worker(fresh_isolated_cluster, lambda: os.makedirs(work, exist_ok=True)) == {"w1": None, "w2": None}
    assert on_each_worker(fresh_isolated_cluster, write_error, work) == {"w1": 0, "w2": 0}


def test_the_shared_folder_is_the_one_thing_workers_see_live_and_read_only(fresh_isolated_cluster):
    tree = fresh_isolated_cluster.shared / uuid.uuid4().hex  # written after the workers started
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "a.txt").write_text("shared")
    read = on_each_worker(fresh_isolated_cluster, lambda: (tree / "sub" / "a.txt").read_text())
    assert read == {"w1": "shared", "w2": "shared"}
    assert on_each_worker(fresh_isolated_cluster, write_error, str(tree)) == {"w1": errno.EROFS, "w2": errno.EROFS}


def test_workers_get_no_secrets_but_the_prefect_server(fresh_isolated_cluster, emulator, prefect_server, monkeypatch):
    monkeypatch.setenv("BATCHFLOWS_TEST_SETTING", "passed on")
    fresh_isolated_cluster.restart_worker("w1")  # started with CARD_API_KEY in this environment
    seen = on_each_worker(fresh_isolated_cluster, lambda: {name: os.environ.get(name) for name in (
        "CARD_API_KEY", "PREFECT_API_URL", "PREFECT_HOME", "BATCHFLOWS_TEST_SETTING")})
    assert os.environ["CARD_API_KEY"] and os.environ["PREFECT_HOME"]
    assert seen["w1"] == {"CARD_API_KEY": None, "PREFECT_API_URL": prefect_server, "PREFECT_HOME": None,
                          "BATCHFLOWS_TEST_SETTING": "passed on"}
    assert seen["w2"]["CARD_API_KEY"] is None and seen["w2"]["PREFECT_API_URL"] == prefect_server


def test_workers_reach_the_prefect_server_and_the_emulator_on_loopback(fresh_isolated_cluster, emulator,
                                                                        prefect_server):
    for url in (f"{prefect_server}/health", f"{emulator.url}/_emulator/health"):
        assert on_each_worker(fresh_isolated_cluster, http_status, url) == {"w1": 200, "w2": 200}


def test_a_killed_worker_leaves_the_other_serving(fresh_isolated_cluster):
    victim = fresh_isolated_cluster.workers["w1"]
    processes = victim.processes()
    assert {victim.pid, victim.task_pid} <= {process.pid for process in processes}
    os.kill(victim.pid, signal.SIGKILL)
    listed = fresh_isolated_cluster.wait_for_scheduler_workers({"w2"}, timeout=60)
    _, left = psutil.wait_procs(processes, timeout=30)
    assert not left and not victim.alive()
    with fresh_isolated_cluster.client() as client:
        assert list(client.scheduler_info()["workers"]) == [listed["w2"]]
        assert [client.submit(socket.gethostname, pure=False).result(timeout=60) for _ in range(3)] == ["w2"] * 3
    fresh_isolated_cluster.ensure_workers()
    assert on_each_worker(fresh_isolated_cluster, socket.gethostname) == {"w1": "w1", "w2": "w2"}


def test_the_fixture_fails_in_one_line_without_the_privilege():
    """A root process without CAP_SYS_ADMIN (as in an unprivileged container) cannot isolate workers."""
    def drop_sys_admin():
        import ctypes

        PR_CAPBSET_DROP, CAP_SYS_ADMIN = 24, 21
        assert ctypes.CDLL(None).prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN) == 0

    test = "tests/test_isolated_cluster.py::test_each_worker_has_its_own_hostname_and_home"
    result = subprocess.run([sys.executable, "-m", "pytest", test, "-q", "-p", "no:cacheprovider"],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
                            preexec_fn=drop_sys_admin)
    assert result.returncode == 1, result.stdout + result.stderr
    # the reason once, as its own line (the short summary repeats it after the test id, in full when CI is set)
    reasons = [line for line in result.stdout.splitlines() if line.startswith("isolated_cluster needs root")]
    assert len(reasons) == 1 and "Operation not permitted" in reasons[0], result.stdout
    assert "1 error" in result.stdout.splitlines()[-1] and "skipped" not in result.stdout
