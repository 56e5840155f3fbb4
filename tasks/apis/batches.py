"""Anthropic Message Batches: half the price, answers within 24 h.

Rows that may submit a request say so (`async with batches.member():`); once every such row of the
chunk has queued its request or left (failed before), the queue is sent as one batch (sooner when full). Each request's batch id is kept in an SQLite store under the work dir *as soon as the batch
exists*, so a killed run polls its batches again instead of submitting them twice; `result(custom_id)`
polls the batch (one poller per batch, however many rows wait on it) and hands each row its own result.
"""
from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.apis.llm import LlmClient, LlmSpec
from tasks.engine.stores import SqliteStore

BATCH_DISCOUNT = 0.5  # batch requests cost half the list price
RESUBMIT = {"expired", "canceled", "api_error", "overloaded_error"}  # worth one more try; others are final


class BatchStore(SqliteStore):
    """custom_id -> batch id, for every request submitted from this work dir."""

    TABLES = ("requests (custom_id TEXT PRIMARY KEY, batch_id TEXT, at REAL)",)

    def batch_of(self, custom_id: str) -> str | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT batch_id FROM requests WHERE custom_id = ?", (custom_id,)).fetchone()
        return row[0] if row else None

    def record(self, batch_id: str, custom_ids: list[str]) -> None:
        with closing(self._connect()) as db, db:
            db.executemany("INSERT OR REPLACE INTO requests VALUES (?, ?, ?)",
                           [(custom_id, batch_id, time.time()) for custom_id in custom_ids])


@dataclass(frozen=True)
class BatchSpec:
    """The model (an anthropic LlmSpec: key, limits, price) and how batches are formed and polled;
    `client()` gives the per-chunk `BatchClient` (the chunk engine's API protocol)."""

    llm: LlmSpec
    poll_seconds: float = 30.0
    max_requests: int = 10_000
    max_bytes: int = 64 << 20  # of request JSON per batch (the API takes 256 MB; this bounds memory)
    name: str = "batches"

    @property
    def base_url(self) -> str:
        return self.llm.base_url

    def client(self, concurrency: int, state_dir: str) -> "BatchClient":
        store = BatchStore.shared(str(Path(state_dir) / "cache" / "message-batches.sqlite"))
        return BatchClient(self, self.llm.client(concurrency, state_dir), store)


class BatchClient:
    """`await batches.submit(custom_id, params, system)` -> batch id; `await batches.result(custom_id)`
    -> the SDK's result (`.type`: succeeded / errored / expired / canceled)."""

    def __init__(self, spec: BatchSpec, llm: LlmClient, store: BatchStore):
        self.spec, self.llm, self.store = spec, llm, store
        self.stats = llm.stats
        self._queue: list[tuple[str, dict, asyncio.Future]] = []
        self._bytes = self._members = 0
        self._polls: dict[str, asyncio.Task] = {}
        self._tasks: set[asyncio.Task] = set()

    async def __aenter__(self) -> "BatchClient":
        await self.llm.__aenter__()
        return self

    async def __aexit__(self, *exc) -> None:
        for task in [*self._polls.values(), *self._tasks]:
            task.cancel()
        await self.llm.__aexit__(*exc)

    def close(self) -> None:
        self.llm.close()

    @asynccontextmanager
    async def member(self):
        """A row that may queue a request: the batch waits for it until it queued one or left."""
        self._members += 1
        try:
            yield
        finally:
            self._members -= 1
            self._send_when_ready()

    async def submit(self, custom_id: str, params: dict[str, Any], system: str = "") -> str:
        """Queue one request (inside `member()`); returns its batch id once the batch exists. Callers
        look in `store` first: a request with a batch id there must not be submitted again."""
        request = {"custom_id": custom_id, "params": self.llm.anthropic_params(params, system)}
        future = asyncio.get_running_loop().create_future()
        self._queue.append((custom_id, request, future))
        self._bytes += len(json.dumps(request))
        self._send_when_ready()
        return await future

    def _send_when_ready(self) -> None:
        """Send the queue when every member has queued, or when it is full."""
        full = len(self._queue) >= self.spec.max_requests or self._bytes >= self.spec.max_bytes
        if self._queue and (full or len(self._queue) >= self._members):
            queue, self._queue, self._bytes = self._queue, [], 0
            task = asyncio.create_task(self._create(queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _create(self, queue: list[tuple[str, dict, asyncio.Future]]) -> None:
        requests = [request for _, request, _ in queue]
        try:
            answer = await self.llm.sdk_call(lambda sdk: sdk.messages.batches.with_raw_response.create(requests=requests))
            batch = await answer.parse()
        except BaseException as error:  # every row waiting for this batch gets the error
            for _, _, future in queue:
                if not future.done():
                    future.set_exception(error)
            return
        self.store.record(batch.id, [custom_id for custom_id, _, _ in queue])  # before anyone journals it
        for _, _, future in queue:
            if not future.done():
                future.set_result(batch.id)

    async def result(self, custom_id: str):
        """The request's result once its batch has ended (polled every `poll_seconds`)."""
        batch_id = self.store.batch_of(custom_id)
        if batch_id is None:
            raise KeyError(f"{custom_id} was never submitted")
        if batch_id not in self._polls:
            self._polls[batch_id] = asyncio.create_task(self._poll(batch_id))
        results = await asyncio.shield(self._polls[batch_id])
        return results.get(custom_id)

    async def _poll(self, batch_id: str) -> dict[str, Any]:
        while True:
            answer = await self.llm.sdk_call(lambda sdk: sdk.messages.batches.with_raw_response.retrieve(batch_id))
            if (await answer.parse()).processing_status == "ended":
                break
            await asyncio.sleep(self.spec.poll_seconds)
        return await self.llm.sdk_call(lambda sdk: _read_results(sdk, batch_id))


async def _read_results(sdk, batch_id: str) -> dict[str, Any]:
    """custom_id -> result, streamed from the batch's JSONL results."""
    return {line.custom_id: line.result async for line in await sdk.messages.batches.results(batch_id)}


def failure_kind(result) -> str:
    """`expired` / `canceled`, or the error type of an `errored` result (api_error, invalid_request_error …)."""
    if result is None:
        return "missing from the batch results"
    if result.type != "errored":
        return result.type
    error = getattr(result.error, "error", None)
    return getattr(error, "type", None) or "errored"
