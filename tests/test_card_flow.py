"""The card-recommendations flow end to end: real Prefect server, real emulator on loopback."""
import json
import os
import subprocess
import sys
import time

import pandas as pd
import pytest
from conftest import kill_when, latest_run_artifacts, read_table, write_config

from emulators.cards import recommend
from flows.card_recommendations import card_recommendations, user_profile
from tasks.samples.tables import write_users


def run_flow(workspace, emulator, rows=1000, suffix=".csv", out="out.csv", processing=None, **params):
    users = workspace / f"users{suffix}"
    if not users.exists():
        write_users(users, rows)
    config = write_config(workspace / "config.json", emulator.url, **(processing or {}))
    figures = card_recommendations(str(users), str(workspace / out), str(config), **params)
    return figures, read_table(workspace / out), users


def expected_top_card(row: dict) -> str:
    return recommend(user_profile(row))["recommendations"][0]["card_name"]


def test_order_and_completeness_with_chunks_finishing_out_of_order(workspace, emulator):
    first_chunk = [f"u{n:08d}" for n in range(100)]  # chunk 0 is slow: it finishes last
    emulator.configure("cards", latency=0.01, slow_keys=first_chunk, slow_latency=0.4)
    figures, out, users = run_flow(workspace, emulator, processing={"chunk_size": 100})
    source = pd.read_csv(users, dtype=str)
    assert out.user_id.tolist() == source.user_id.tolist()
    assert (out.status == "ok").all() and (out.error == "").all()
    assert out.monthly_spend.tolist() == source.monthly_spend.tolist()
    for index in (0, 99, 100, 537, 999):
        assert out.recommended_card[index] == expected_top_card(source.iloc[index].to_dict())
    assert json.loads(out.recommendations_json[5])[0]["card_name"] == out.recommended_card[5]
    assert figures["rows"] == figures["ok"] == 1000 and figures["chunks"] == 10
    journals = sorted((workspace / "work" / "journals").rglob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    last = [json.loads(line)["row"] for line in journals[-1].read_text().splitlines()]
    assert min(last) == 1  # the journal finished last holds rows 1..100: chunk 0 ended after the others
    assert emulator.stats("cards")["ok_keys"] == 1000
    artifacts = latest_run_artifacts()
    assert artifacts["card-recommendations-progress"] == 100.0
    summary = artifacts["card-recommendations-summary"]
    for line in ("| rows | 1,000 |", "| ok | 1,000 |", "| failed | 0 |", "| requests sent | 1,000 |",
                 "| chunks (done in an earlier run) | 10 (0) |", f"`{workspace / 'out.csv'}`"):
        assert line in summary


@pytest.mark.parametrize("runner", ["thread", "dask"])
def test_rate_limit_holds_for_the_whole_run(workspace, emulator, runner):
    emulator.configure("cards", latency=0.05, rate_limit=50)  # any excess would be answered 429
    started = time.monotonic()
    figures, out, _ = run_flow(workspace, emulator, rows=400, runner=runner,
                               processing={"rate_limit_per_minute": 3000, "chunk_size": 50, "concurrency": 40})
    stats = emulator.stats("cards")
    assert (out.status == "ok").all() and len(out) == 400
    assert stats["max_1s"] <= 50
    assert stats["statuses"] == {"200": 400}
    assert time.monotonic() - started >= 350 / 50  # spread over time: not a lucky burst


def test_dask_processes_give_the_same_output_as_threads(workspace, emulator):
    _, threads, _ = run_flow(workspace, emulator, rows=600, out="threads.csv", processing={"chunk_size": 100})
    (workspace / "work").rename(workspace / "work-threads")
    emulator.reset()
    _, processes, _ = run_flow(workspace, emulator, rows=600, out="dask.csv", runner="dask",
                               processing={"chunk_size": 100})
    pd.testing.assert_frame_equal(threads, processes)
    assert emulator.stats("cards")["ok_keys"] == 600


def test_killed_run_resumes_without_repeating_finished_rows(workspace, emulator):
    users = workspace / "users.csv"
    write_users(users, 1000)
    config = write_config(workspace / "config.json", emulator.url, chunk_size=100, concurrency=20)
    emulator.configure("cards", latency=0.2)
    env = {"BATCHFLOWS_WORK_DIR": str(workspace / "reference-work")}
    reference = subprocess.run([sys.executable, "-m", "flows.cli", "card-recommendations", str(users),
                                "-o", str(workspace / "reference.csv"), "--config", str(config)],
                               env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stderr
    emulator.reset()
    emulator.configure("cards", latency=0.2)
    command = [sys.executable, "-m", "flows.cli", "card-recommendations", str(users),
               "-o", str(workspace / "out.csv"), "--config", str(config)]
    kill_when(command, lambda: emulator.stats("cards")["ok_keys"] >= 450)
    done_before = emulator.stats("cards")["ok_keys"]
    assert 450 <= done_before < 1000
    assert not (workspace / "out.csv").exists()
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "chunks finished in an earlier run" in rerun.stdout + rerun.stderr  # resumed from the journal
    stats = emulator.stats("cards")
    assert stats["ok_keys"] == 1000
    assert len(stats["ok_repeated_keys"]) <= 100  # at most one chunk's worth of requests in flight
    pd.testing.assert_frame_equal(read_table(workspace / "out.csv"), read_table(workspace / "reference.csv"))


def test_transient_failures_get_a_follow_up_pass_and_reruns_skip_paid_work(workspace, emulator):
    emulator.configure("cards", error_rate=0.3, seed=3)
    figures, out, _ = run_flow(workspace, emulator, rows=500, processing={"max_attempts": 1})
    assert figures["passes"] == 2 and figures["http_5xx"] > 100
    failed = out[out.status == "failed"]
    assert len(out) == 500 and 0 < len(failed) < 100  # pass 2 fixed most of pass 1's ~150 failures
    assert failed.error.str.startswith("gave up after 2 attempts over 2 passes: HTTP 50").all()  # 1 per pass
    first_run_ok = emulator.stats("cards")["ok_keys"]
    emulator.configure("cards", error_rate=0.0)
    figures, out, _ = run_flow(workspace, emulator, rows=500, processing={"max_attempts": 1})
    assert (out.status == "ok").all()
    assert figures["chunks_done_before"] == 0 and figures["requests"] == len(failed)
    stats = emulator.stats("cards")
    assert stats["ok_keys"] == 500 and stats["ok_repeated_keys"] == {} and first_run_ok == 500 - len(failed)


def test_faults_storms_and_hangs_are_survived_and_counted(workspace, emulator):
    emulator.configure("cards", error_rate=0.1, storm_period=2.0, storm_duration=0.3, hang_rate=0.02,
                       hang_seconds=30, latency=0.02, seed=11)
    figures, out, _ = run_flow(workspace, emulator, rows=500, processing={"timeout": 1, "concurrency": 50})
    assert len(out) == 500 and (out.status == "ok").all()
    assert figures["retries"] > 50 and figures["http_5xx"] > 20
    assert figures["http_429"] > 0 and figures["timeouts"] > 0
    assert figures["requests"] == emulator.stats("cards")["total"]  # the summary counts what was really sent
    assert figures["requests"] >= 500 + figures["retries"]  # more if a row needed the follow-up pass
    summary = latest_run_artifacts()["card-recommendations-summary"]
    steps = [line.split(" | ") for line in summary[summary.index("## Rows finished over time"):].splitlines()[4:]]
    assert sum(int(step[3]) for step in steps) == figures["http_429"]  # 429s and retries over time add up
    assert sum(int(step[4].rstrip(" |")) for step in steps) == figures["retries"]
