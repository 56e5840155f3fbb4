"""tasks/files/sandbox.py's prestart: parser processes started before the first chunk, taken by it."""
import asyncio
import time

import psutil
import pytest

from tasks.engine.outcomes import FatalError
from tasks.files.sandbox import Sandbox, stop_idle_children
from tasks.samples import files as samples


@pytest.fixture(autouse=True)
def no_pooled_children():
    stop_idle_children()  # each test counts the children it starts
    yield
    stop_idle_children()


def parser_processes() -> set[int]:
    return {p.pid for p in psutil.Process().children() if "tasks.files.sandbox_child" in p.cmdline()}


def wait_for_children(count: int) -> set[int]:
    deadline = time.monotonic() + 30
    while len(parser_processes()) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return parser_processes()


def test_prestarted_children_answer_the_first_chunk(tmp_path):
    """Two children started before any chunk; a chunk with two lanes takes both (their "ready"
    line read by the chunk, not taken for an answer) and starts none of its own."""
    files = [str(samples.write_png(tmp_path / f"{n}.png")) for n in range(8)]
    spec = Sandbox("tasks.files.metadata:extract")
    spec.prestart(2)
    started = wait_for_children(2)

    async def run():
        async with spec.client(8, "") as client:  # DEPTH 4: two lanes
            return await asyncio.gather(*(client.call(path) for path in files))

    answers = asyncio.run(run())
    assert [(answer.problem, answer.value["status"], answer.value["format"]) for answer in answers] == \
        [("", "ok", "png")] * len(files)
    assert len(started) == 2 and parser_processes() == started  # the prestarted ones answered, back in the pool
    stop_idle_children()
    assert not parser_processes()


def test_a_prestarted_child_that_cannot_start_stops_the_run():
    spec = Sandbox("no_such_module:f")
    spec.prestart(1)

    async def run():
        async with spec.client(1, "") as client:
            return await client.call("x")

    with pytest.raises(FatalError, match="did not start: ModuleNotFoundError"):
        asyncio.run(run())
