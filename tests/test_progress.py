"""Progress moves with the rows, not with the chunks: read from the Prefect API while a run goes."""
import asyncio
import re
import threading
import time

import pytest
from conftest import latest_run_artifacts, write_config
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.sorting import ArtifactSort

from flows.card_recommendations import card_recommendations
from tasks.samples.tables import write_users


def watch_progress(key: str, ready: threading.Event, stop: threading.Event, seen: list) -> None:
    """Every 0.3 s: (time, flow run id, progress %, description) of the newest progress artifact with `key`;
    `ready` once the first read is done (the client's start-up can take seconds on a busy machine)."""
    async def poll():
        async with get_client() as client:
            while not stop.is_set():
                found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                                    sort=ArtifactSort.CREATED_DESC, limit=1, offset=0)
                if found and isinstance(found[0].data, (int, float)):
                    seen.append((time.time(), found[0].flow_run_id, float(found[0].data), found[0].description or ""))
                ready.set()
                await asyncio.sleep(0.3)
    asyncio.run(poll())


def chunk_end_times(flow_run_id) -> list[float]:
    async def read():
        async with get_client() as client:
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            return [r.end_time.timestamp() for r in runs if r.name.startswith("chunk-") and r.end_time]
    return asyncio.run(read())


@pytest.mark.parametrize("runner", ["thread", "cluster"])
def test_progress_and_eta_follow_the_rows_before_any_chunk_ends(workspace, emulator, request, runner):
    address = request.getfixturevalue("fresh_isolated_cluster").address if runner == "cluster" else "thread"
    emulator.configure("cards", latency=1.0)  # 4 chunks of 100 rows, 10 in flight each: every chunk takes ~10 s
    users = write_users(workspace / "users.csv", 400)
    config = write_config(workspace / "config.json", emulator.url, chunk_size=100, concurrency=40)
    seen, ready, stop = [], threading.Event(), threading.Event()
    watcher = threading.Thread(target=watch_progress, args=("card-recommendations-progress", ready, stop, seen))
    watcher.start()
    assert ready.wait(60)
    try:
        state = card_recommendations(str(users), str(workspace / "out.csv"), str(config), runner=address,
                                     return_state=True)
    finally:
        stop.set()
        watcher.join()
    ended = time.time()
    assert state.is_completed()
    run_id = state.state_details.flow_run_id
    seen = [(at, progress, description) for at, run, progress, description in seen if run == run_id]
    first_chunk_end = min(chunk_end_times(run_id))
    before = sorted({progress for at, progress, _ in seen if at < first_chunk_end and 0 < progress < 100})
    assert len(before) >= 3, seen  # the artifact moved several times while every chunk was still running
    at, progress, description = next(s for s in seen if s[1] >= 50)
    eta = re.search(r"ETA (\d+)m(\d+)s", description)
    assert eta and "rows/s" in description, description
    predicted, actual = int(eta[1]) * 60 + int(eta[2]), ended - at
    assert abs(predicted - actual) <= 0.3 * actual + 1, (predicted, actual, description)  # +1: the ETA's whole seconds
    summary = latest_run_artifacts(run_id)["card-recommendations-summary"]
    timeline = summary[summary.index("## Rows finished over time"):].splitlines()
    assert timeline[2] == "| time | rows finished | rows/s in the step | 429s | retries |"
    assert timeline[-1].split(" | ")[1].startswith("400")
