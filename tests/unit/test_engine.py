"""The chunk engine's parts without Prefect: staging, the journal, the channel, the chunk's row loop,
the scheduler's coordinator and the cluster limiter (on a real Dask cluster in this process)."""
import asyncio
import json
import time

import numpy as np
import pandas as pd
import pytest

from tasks.engine.channel import LocalChannel
from tasks.engine.chunk import _process_rows
from tasks.engine.cluster import Coordinator, SchedulerClock
from tasks.engine.job import Job, RunOptions
from tasks.engine.journal import Journal, assemble_output, needs_work, read_journal
from tasks.engine.outcomes import FatalError, MachineryError, Partial, RowError, Stopped
from tasks.engine.staging import find_duplicates, input_problem, stage_input


async def double(row, clients):
    """A handler: numbers double, `bad` fails the row, `transient` fails it retryably, `fatal` stops the run."""
    value = row["value"]
    if value == "bad":
        raise RowError("not a number", bad_input=True)
    if value == "transient":
        raise RowError("HTTP 503: try later", retryable=True)
    if value == "fatal":
        raise FatalError("HTTP 401: wrong key")
    if value == "broken-store":
        raise MachineryError("the store is locked")
    if value == "half":
        return Partial({"double": None}, "only half")
    return {"double": int(value) * 2}


def job_for(tmp_path, **fields) -> Job:
    return Job("unit", double, ("double",), (), str(tmp_path / "work"), **fields)


def rows_of(*values):
    return [{"_row": n, "_input_error": "", "value": v} for n, v in enumerate(values, 1)]


def run_rows(channel, job, rows):
    link = channel.link("chunk-a")
    return asyncio.run(_process_rows(rows, job, link, "in.csv"))


def taken_records(channel) -> dict[int, dict]:
    return {r["row"]: r for r in map(json.loads, channel.take().lines.get("chunk-a", []))}


def test_each_row_ends_as_a_record_and_the_chunk_goes_on(tmp_path):
    channel = LocalChannel(str(tmp_path))
    run_rows(channel, job_for(tmp_path, concurrency=3), rows_of("1", "bad", "transient", "half", "5"))
    records = taken_records(channel)
    assert records[1] == {"row": 1, "status": "ok", "error": "", "result": {"double": 2}}
    assert records[2]["error"] == "in.csv row 2, not a number" and not records[2]["retryable"]
    assert records[3]["retryable"] and needs_work(records[3]) and not needs_work(records[2])
    assert (records[4]["status"], records[4]["error"]) == ("partial", "only half")
    assert records[5]["result"] == {"double": 10}
    assert channel.link("chunk-a").done_rows() == {1, 2, 3, 4, 5}  # a retry of the chunk skips them


def test_a_fatal_error_stops_every_chunk_of_the_run_and_keeps_what_finished(tmp_path):
    channel = LocalChannel(str(tmp_path))
    with pytest.raises(FatalError, match="wrong key"):
        run_rows(channel, job_for(tmp_path, concurrency=1), rows_of("1", "fatal", "3"))
    assert set(taken_records(channel)) == {1}
    other = channel.link("chunk-b")
    with pytest.raises(Stopped, match="wrong key"):  # the next send of any other chunk stops it
        asyncio.run(other.send(['{"row": 9}'], [9], {}))


def test_a_machinery_failure_fails_the_chunk_not_the_row(tmp_path):
    channel = LocalChannel(str(tmp_path))
    with pytest.raises(MachineryError):
        run_rows(channel, job_for(tmp_path, concurrency=1), rows_of("1", "broken-store", "3"))
    assert 2 not in taken_records(channel)


def test_staging_finds_repeated_keys_and_names_them(tmp_path):
    source = tmp_path / "in.csv"
    pd.DataFrame({"id": ["a", "b", "a", "", "b", "c"], "value": range(6)}).to_csv(source, index=False)
    job = job_for(tmp_path, key_column="id")
    chunks = stage_input(job, source, RunOptions(chunk_size=2))
    assert [c.rows for c in chunks] == [2, 2, 2] and [c.first_row for c in chunks] == [1, 3, 5]
    assert [dict(c.duplicates) for c in chunks] == [{}, {3: 1}, {5: 2}]
    row = chunks[1].frame().to_dict("records")[0]
    assert input_problem(row, "id", dict(chunks[1].duplicates), "in.csv") == \
        "in.csv row 3, column id: duplicate id 'a' (first seen at row 1)"
    empty = chunks[1].frame().to_dict("records")[1]
    assert input_problem(empty, "id", {}, "in.csv") == "in.csv row 4, column id: empty"
    again = stage_input(job, source, RunOptions(chunk_size=2))
    assert [c.digest for c in again] == [c.digest for c in chunks]  # content-addressed: a rerun finds its journal


def test_find_duplicates_keeps_the_first_of_each_key():
    rows, hashes = np.array([1, 2, 3, 4, 5]), np.array([7, 8, 7, 7, 8], dtype=np.uint64)
    assert find_duplicates(rows, hashes) == {3: 1, 4: 1, 5: 2}


def test_the_journal_ignores_a_torn_line_and_the_last_line_wins(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text('{"row": 1, "status": "failed", "error": "x", "retryable": true}\n'
                    '{"row": 1, "status": "ok", "error": "", "result": {}}\n{"row": 2, "sta')
    assert read_journal(path) == {1: {"row": 1, "status": "ok", "error": "", "result": {}}}


def test_the_output_holds_every_row_in_input_order(tmp_path):
    source = tmp_path / "in.csv"
    pd.DataFrame({"value": ["1", "2", "3", "4"]}).to_csv(source, index=False)
    job = job_for(tmp_path, column_types={"double": "Int64"})  # integers stay integers beside empty cells
    chunks = stage_input(job, source, RunOptions(chunk_size=2))
    journal = Journal(job)
    journal.append(chunks[1].digest, ['{"row": 4, "status": "ok", "error": "", "result": {"double": 8}}'])
    journal.append(chunks[0].digest, ['{"row": 1, "status": "ok", "error": "", "result": {"double": 2}}'])
    counts, reasons, _ = assemble_output(job, journal, chunks, tmp_path / "out.csv", {1: "MachineryError: gone"})
    out = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert out.value.tolist() == ["1", "2", "3", "4"] and out.double.tolist() == ["2", "", "", "8"]
    assert out.error.tolist() == ["", "not processed: the chunk did not finish", "not processed: MachineryError: gone", ""]
    assert counts == {"ok": 2, "failed": 2}


def test_the_coordinator_hands_out_slots_pauses_and_keeps_rows_for_the_flow():
    book = Coordinator()
    now, slots = book.reserve("api", 0.1, count=3)
    assert slots[0] >= now and np.allclose(np.diff(slots), 0.1)
    _, later = book.reserve("api", 0.1)
    assert later[0] == pytest.approx(slots[-1] + 0.1)
    book.pause("api", 5.0)
    _, paused = book.reserve("api", 0.1)
    assert paused[0] >= time.monotonic() + 4.9  # a Retry-After holds every worker back
    book.begin("run", "g1")
    assert book.push("run", "g1", "c", ["line-1"], [1], {"requests": 3, "throttled": 1}) == ""
    assert book.push("run", "g0", "c", ["line-2"], [2], {"requests": 1}) == "a newer run of the same job has started"
    assert book.done_rows("run", "c") == [1, 2]
    assert book.take("run") == {"lines": {"c": ["line-1", "line-2"]}, "calls": {"requests": 4, "throttled": 1}}
    assert book.take("run") == {"lines": {}, "calls": {}}
    book.abort("run", "HTTP 401")
    assert book.push("run", "g1", "c", [], []) == "HTTP 401"
    book.forget("run", "c")
    assert book.done_rows("run", "c") == []


def test_the_scheduler_clock_trusts_the_shortest_round_trip():
    clock = SchedulerClock()
    clock.observe(sent=10.0, arrived=10.2, scheduler_now=110.05)  # 200 ms round trip
    clock.observe(sent=11.0, arrived=11.002, scheduler_now=111.001)  # 2 ms: offset 100.0
    clock.observe(sent=12.0, arrived=12.5, scheduler_now=112.4)  # slower again: ignored
    assert clock.local(150.0) == pytest.approx(50.0)


def test_the_cluster_limiter_holds_across_workers():
    """Two Dask workers (processes) share a budget of 100/s through the scheduler: in 3 s no 1 s
    window holds more than 100 sends, and together they use most of it."""
    from distributed import Client, LocalCluster

    from tasks.engine.cluster import PLUGIN_NAME

    def sends(seconds: float) -> list[float]:
        from tasks.engine.cluster import ClusterLimiter

        async def go():
            limiter, times = ClusterLimiter("unit-api", 100.0), []
            end = time.monotonic() + seconds

            async def sender():
                while time.monotonic() < end:
                    await limiter.acquire()
                    times.append(time.time())
            await asyncio.gather(*(sender() for _ in range(20)))
            return times
        return asyncio.run(go())

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        client.register_plugin(Coordinator(), name=PLUGIN_NAME)
        futures = [client.submit(sends, 3.0, pure=False, workers=[w]) for w in client.nthreads()]
        times = np.sort(np.concatenate(client.gather(futures)))
    window = max(np.searchsorted(times, t + 1.0) - i for i, t in enumerate(times))
    assert window <= 100 and len(times) >= 0.8 * 100 * 3
