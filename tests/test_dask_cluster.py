"""Every workload on a Dask cluster whose workers share nothing with the flow but the network
(tests/isolated_cluster.py: own /tmp, HOME, work dir and hostname; code and venv read-only)."""
import os
import signal
import sys
import time

import pandas as pd
from conftest import kill_when, read_table, run_cli, write_config
from test_book_requests import kill_mid_send_and_rerun

from flows.card_recommendations import card_recommendations
from flows.file_metadata import file_metadata
from tasks.samples import files as samples
from tasks.samples.tables import write_users


def cards(workspace, emulator, address, rows, out="out.csv", **processing):
    users = workspace / "users.csv"
    if not users.exists():
        write_users(users, rows)
    config = write_config(workspace / "config.json", emulator.url, **processing)
    figures = card_recommendations(str(users), str(workspace / out), str(config), runner=address)
    return figures, read_table(workspace / out)


def test_card_recommendations_equal_a_thread_run_within_the_limit(workspace, emulator, fresh_isolated_cluster):
    cluster = fresh_isolated_cluster
    emulator.configure("cards", latency=0.05, rate_limit=40)  # any excess is answered 429
    figures, out = cards(workspace, emulator, cluster.address, 600, chunk_size=50, concurrency=40,
                         rate_limit_per_minute=2400)
    stats = emulator.stats("cards")
    assert len(out) == 600 and (out.status == "ok").all()
    assert stats["max_1s"] <= 40 and stats["statuses"] == {"200": 600}
    hosts = {worker.split(":")[0] for worker in figures["chunks_per_worker"]}
    assert hosts == {w.hostname for w in cluster.workers.values()}  # both workers, nothing in this process
    emulator.configure("cards", rate_limit=None)
    _, threaded = cards(workspace, emulator, "thread", 600, out="threads.csv", chunk_size=50,
                        work_dir=str(workspace / "thread-work"))
    pd.testing.assert_frame_equal(out, threaded)


def test_a_killed_flow_resumes_paying_only_for_the_rows_in_flight(workspace, emulator, fresh_isolated_cluster):
    users = workspace / "users.csv"
    write_users(users, 1200)
    config = write_config(workspace / "config.json", emulator.url, chunk_size=150, concurrency=20)
    emulator.configure("cards", latency=0.2)
    command = [sys.executable, "-m", "flows.cli", "card-recommendations", str(users), "-o", str(workspace / "out.csv"),
               "--config", str(config), "--runner", fresh_isolated_cluster.address]
    kill_when(command, lambda: emulator.stats("cards")["ok_keys"] >= 400)
    assert emulator.stats("cards")["ok_keys"] < 1200
    time.sleep(1)  # the killed run's chunks hear that their flow run is gone and stop
    rerun = run_cli(*command[3:])
    assert rerun.returncode == 0, rerun.stderr
    out = read_table(workspace / "out.csv")
    stats = emulator.stats("cards")
    assert len(out) == 1200 and (out.status == "ok").all() and stats["ok_keys"] == 1200
    # repeated: the 20 requests in flight at the kill, and what a chunk finished in its last 0.25 s
    assert len(stats["ok_repeated_keys"]) <= 20 + 2 * 20, stats["ok_repeated_keys"]


def test_a_worker_killed_mid_chunk_repeats_at_most_its_work_in_flight(workspace, emulator, fresh_isolated_cluster):
    cluster = fresh_isolated_cluster
    emulator.configure("cards", latency=0.2)
    victim = cluster.workers["w1"]
    users = workspace / "users.csv"
    write_users(users, 800)
    config = write_config(workspace / "config.json", emulator.url, chunk_size=200, concurrency=20)

    def kill_soon():
        while emulator.stats("cards")["ok_keys"] < 150:
            time.sleep(0.05)
        os.kill(victim.pid, signal.SIGKILL)

    import threading

    killer = threading.Thread(target=kill_soon, daemon=True)
    killer.start()
    figures = card_recommendations(str(users), str(workspace / "out.csv"), str(config), runner=cluster.address)
    killer.join()
    out = read_table(workspace / "out.csv")
    stats = emulator.stats("cards")
    assert not victim.alive()
    assert len(out) == 800 and (out.status == "ok").all() and figures["ok"] == 800
    # its 10 requests in flight + the rows it finished since its last flush: 10 in flight at 0.2 s each is
    # 50 rows/s, and a chunk sends its finished rows every 0.25 s, so at most 13 wait for the flush
    assert len(stats["ok_repeated_keys"]) <= 10 + 13, stats["ok_repeated_keys"]


def test_file_metadata_reads_a_tree_every_worker_mounts(workspace, fresh_isolated_cluster):
    cluster = fresh_isolated_cluster
    root = cluster.shared / f"tree-{os.getpid()}-{time.monotonic_ns()}"
    root.mkdir()
    for n, write in enumerate((samples.write_wav, samples.write_png, samples.write_pdf, samples.write_fits) * 3):
        write(root / f"f{n:02d}.{write.__name__.removeprefix('write_')}")
    dask = file_metadata(str(root), str(workspace / "dask.jsonl"), chunk_size=4, runner=cluster.address)
    thread = file_metadata(str(root), str(workspace / "thread.jsonl"), chunk_size=4)
    assert dask["requests"] == 12 and dask["statuses"] == {"ok": 12, "failed": 0}
    assert thread["requests"] == 0  # known from the cluster run: the flow side kept every outcome
    drop = lambda frame: frame.drop(columns=["elapsed_ms"])  # noqa: E731
    pd.testing.assert_frame_equal(drop(pd.read_json(workspace / "dask.jsonl", lines=True)),
                                  drop(pd.read_json(workspace / "thread.jsonl", lines=True)))


def test_a_tree_the_workers_cannot_see_stops_before_any_parse(workspace, fresh_isolated_cluster):
    root = workspace / "local-tree"  # the workers' view of this folder is an empty tmpfs
    root.mkdir()
    samples.write_wav(root / "a.wav")
    result = run_cli("file-metadata", str(root), "-o", str(workspace / "out.csv"), "--runner",
                     fresh_isolated_cluster.address)
    assert result.returncode == 1
    error = [line for line in result.stderr.splitlines() if line.startswith("batchflows: error:")]
    assert error == [f"batchflows: error: 2 of 2 workers cannot work: {root} does not exist on worker w1: mount the "
                     f"tree at the same path on every worker; {root} does not exist on worker w2: mount the tree at "
                     "the same path on every worker"]


def test_book_requests_on_the_cluster_send_each_message_once_across_a_kill(books, emulator, fresh_isolated_cluster):
    workspace, _, _ = books
    emulator.configure("messaging", latency=0.3, lose_answer_rate=0.2, error_statuses=[503], seed=2)
    seen = kill_mid_send_and_rerun(workspace, emulator, "--chunk-size", "25", "--runner", fresh_isolated_cluster.address)
    assert seen["lost_answers"] > 0 and seen["duplicates"] == 0
    assert seen["delivered"] == len(read_table(workspace / "out" / "accepted.csv"))
    geocoded = emulator.stats("geocoding")  # the flow side's cache: each address paid for once over both runs
    assert geocoded["total"] == geocoded["distinct_keys"]
