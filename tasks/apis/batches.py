"""Anthropic Message Batches: half the price, answers within 24 h.

Rows that may submit a request say so (`async with batches.member():`); once every such row of the
chunk has queued its request or left (failed before), the queue is sent as one batch (sooner when full).
`result(custom_id)` polls the batch (one poller per batch, however many rows wait on it) and hands each
row its own result.

Each batch is created exactly once, across kills at any instant: before its create request leaves, an
intent (the custom_ids, when each attempt left) is committed to `BatchIntents`; the answer settles it
and the request's batch id goes to `BatchStore`. An intent a kill or a lost answer left open is never
sent blindly again: it adopts the listed batch that matches it (created in its window, as many
requests), verified by custom_id once that batch's results arrive (tasks/apis/batch_intents.py says
why this is safe with the real API's fields). A timed-out or 5xx create is resolved the same way
instead of being retried; only a refusal (429, 529, 4xx) is known to have created nothing.
"""
from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.apis.batch_intents import BatchIntents, request_total
from tasks.apis.llm import LlmClient, LlmSpec
from tasks.engine.job import Limits
from tasks.engine.outcomes import FatalError, RowError
from tasks.engine.stores import SqliteStore

BATCH_DISCOUNT = 0.5  # batch requests cost half the list price
RESUBMIT = {"expired", "canceled", "api_error", "overloaded_error"}  # worth one more try; others are final
REFUSED = {429, 529}  # the API refused the create: nothing was created, try again
CREATE_ROUNDS = 3  # creates whose outcome stayed unclear and turned out void, before the rows give up


class NotSubmitted(Exception):
    """The request's batch turned out never to have been created (a killed run's create that never
    reached the API): submit it again."""


class UnclearAnswer(Exception):
    """A create whose answer never came (timeout, lost connection, 5xx): the batch may exist."""


class BatchStore(SqliteStore):
    """custom_id -> batch id, for every request submitted from this work dir."""

    TABLES = ("requests (custom_id TEXT PRIMARY KEY, batch_id TEXT, at REAL)",)

    def batch_of(self, custom_id: str) -> str | None:
        row = self.read(lambda db: db.execute("SELECT batch_id FROM requests WHERE custom_id = ?",
                                              (custom_id,)).fetchone())
        return row[0] if row else None

    def record(self, batch_id: str, custom_ids: list[str]) -> None:
        now = time.time()
        self.write(lambda db: db.executemany("INSERT OR REPLACE INTO requests VALUES (?, ?, ?)",
                                             [(custom_id, batch_id, now) for custom_id in custom_ids]))


@dataclass(frozen=True)
class BatchSpec:
    """The model (an anthropic LlmSpec: key, limits, price) and how batches are formed and polled;
    `client()` gives the per-chunk `BatchClient` (the chunk engine's API protocol). `intents`: where
    the durable intent record lives (default: beside the batch ids, under the work dir)."""

    llm: LlmSpec
    store: str  # the SQLite file of custom_id -> batch id (on a cluster, each worker keeps its own)
    poll_seconds: float = 60.0  # Anthropic's batch-processing guide polls once a minute
    max_requests: int = 10_000
    max_bytes: int = 64 << 20  # of request JSON per batch (the API takes 256 MB; this bounds memory)
    intents: str = ""
    clock_skew: float = 30.0  # seconds our clock and the API's may differ by (NTP keeps them within ~1 s)
    name: str = "batches"

    @property
    def fingerprint(self) -> str:
        return self.llm.fingerprint

    def client(self, concurrency: int, limits: Limits) -> "BatchClient":
        intents = BatchIntents.shared(self.intents or str(Path(self.store).with_name("message-batch-intents.sqlite")))
        return BatchClient(self, self.llm.client(concurrency, limits), BatchStore.shared(self.store), intents)


class BatchClient:
    """`await batches.submit(custom_id, params, system)` -> batch id; `await batches.result(custom_id)`
    -> the SDK's result (`.type`: succeeded / errored / expired / canceled)."""

    def __init__(self, spec: BatchSpec, llm: LlmClient, store: BatchStore, intents: BatchIntents):
        self.spec, self.llm, self.store, self.intents = spec, llm, store, intents
        self.stats = llm.stats
        self._queue: list[tuple[str, dict, asyncio.Future]] = []
        self._bytes = self._members = 0
        self._polls: dict[str, asyncio.Task] = {}
        self._resolving: dict[str, asyncio.Task] = {}
        self._tasks: set[asyncio.Task] = set()

    async def __aenter__(self) -> "BatchClient":
        await self.llm.__aenter__()
        return self

    async def __aexit__(self, *exc) -> None:
        for task in [*self._polls.values(), *self._resolving.values(), *self._tasks]:
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

    async def submitted(self, custom_id: str) -> str | None:
        """The batch that holds the request if it was submitted before (None: submit it). From its
        intent (a batch a killed run created is adopted here, provisionally until its results show
        the request; an intent that created nothing is voided), else from the store."""
        intent = self.intents.of(custom_id)
        if intent is None:
            return self.store.batch_of(custom_id)
        return intent.batch_id or await self._resolve(intent.id)

    async def submit(self, custom_id: str, params: dict[str, Any], system: str = "") -> str:
        """Queue one request (inside `member()`); returns its batch id once the batch exists. Callers
        ask `submitted` first: a request submitted before must not be submitted again."""
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
        try:
            batch_id = await self._create_once([custom_id for custom_id, _, _ in queue],
                                               [request for _, request, _ in queue])
        except BaseException as error:  # every row waiting for this batch gets the error
            for _, _, future in queue:
                if not future.done():
                    future.set_exception(error)
            return
        for _, _, future in queue:
            if not future.done():
                future.set_result(batch_id)

    async def _create_once(self, custom_ids: list[str], requests: list[dict]) -> str:
        """The batch of these requests: created, or adopted when the create's answer was lost."""
        for _ in range(CREATE_ROUNDS):
            intent = self.intents.begin(custom_ids)  # committed before the request leaves
            attempts = 0

            async def post(sdk):
                nonlocal attempts
                if (attempts := attempts + 1) > 1:
                    self.intents.attempt(intent.id)  # a 429/529 before: widen the window to this attempt
                return await self._post(sdk, requests)

            try:
                batch = await self.llm.sdk_call(post)
            except UnclearAnswer:
                if (adopted := await self._resolve(intent.id)) is not None:
                    return adopted
                continue  # the API never created it: send it again
            except (RowError, FatalError):
                self.intents.void(intent.id)  # every attempt was refused: nothing was created
                raise
            self.intents.settle(intent.id, batch.id, verified=True)
            self.store.record(batch.id, custom_ids)  # before anyone journals it
            return batch.id
        raise RowError(f"batch creation stayed unclear {CREATE_ROUNDS} times", retryable=True)

    async def _post(self, sdk, requests: list[dict]):
        """One create attempt. Refusals go back to the retry loop; an answer that never came raises
        `UnclearAnswer` (our own deadline sits inside the loop's, so a timeout is never retried blindly)."""
        import anthropic

        try:
            async with asyncio.timeout(self.llm.spec.timeout * 0.9):
                return await (await sdk.messages.batches.with_raw_response.create(requests=requests)).parse()
        except anthropic.APIStatusError as error:
            if error.status_code in REFUSED or error.status_code < 500:
                raise
            raise UnclearAnswer(f"HTTP {error.status_code}") from error
        except (TimeoutError, anthropic.APITimeoutError, anthropic.APIConnectionError) as error:
            raise UnclearAnswer(type(error).__name__) from error

    async def _resolve(self, intent_id: str) -> str | None:
        """One resolution per open intent at a time, shared by its rows."""
        if intent_id not in self._resolving:
            task = self._resolving[intent_id] = asyncio.create_task(self._adopt(intent_id))
            task.add_done_callback(lambda _: self._resolving.pop(intent_id, None))
        return await asyncio.shield(self._resolving[intent_id])

    async def _adopt(self, intent_id: str) -> str | None:
        """Adopt the listed batch that best matches the open intent; void the intent once its window
        is over with none (then nothing can appear any more)."""
        reach = self.llm.spec.timeout  # how long after an attempt left the API may create the batch
        while True:
            intent = self.intents.get(intent_id)
            if intent is None or intent.batch_id:  # settled or voided meanwhile (e.g. by another process)
                return intent.batch_id if intent else None
            window = intent.window(reach, self.spec.clock_skew)
            listed = await self.llm.sdk_call(lambda sdk: _listed_since(sdk, window[0]))
            held = self.intents.held([batch.id for batch in listed])
            candidates = sorted((batch for batch in listed if batch.id not in held and batch.id not in intent.rejected
                                 and intent.matches(window, batch.created_at, request_total(batch))),
                                key=lambda batch: abs(batch.created_at.timestamp() - intent.sent_at))
            if candidates:
                self.intents.settle(intent.id, candidates[0].id, verified=False)
                return candidates[0].id
            if time.time() > window[1]:
                self.intents.void(intent.id)
                return None
            await asyncio.sleep(min(self.spec.poll_seconds, window[1] - time.time()) + 0.01)

    async def result(self, custom_id: str):
        """The request's result once its batch has ended (polled every `poll_seconds`); None if the
        batch that answered for it lacks it. A provisionally adopted batch is verified here: one
        without the request is rejected and the next candidate tried. Raises `NotSubmitted` when no
        batch holds it."""
        while True:
            batch_id = await self.submitted(custom_id)
            if batch_id is None:
                raise NotSubmitted(custom_id)
            results = await self._results(batch_id)
            intent = self.intents.of(custom_id)
            if custom_id in results:  # proof that this batch holds the intent's requests
                if intent is not None and not intent.verified:
                    self.intents.settle(intent.id, batch_id, verified=True)
                    self.store.record(batch_id, list(intent.custom_ids))
                return results[custom_id]
            if intent is None or (intent.verified and intent.batch_id == batch_id):
                return None
            if not intent.verified:
                self.intents.reject(intent.id, batch_id)

    async def _results(self, batch_id: str) -> dict[str, Any]:
        if batch_id not in self._polls:
            self._polls[batch_id] = asyncio.create_task(self._poll(batch_id))
        return await asyncio.shield(self._polls[batch_id])

    async def _poll(self, batch_id: str) -> dict[str, Any]:
        while True:
            answer = await self.llm.sdk_call(lambda sdk: sdk.messages.batches.with_raw_response.retrieve(batch_id))
            if (await answer.parse()).processing_status == "ended":
                break
            await asyncio.sleep(self.spec.poll_seconds)
        return await self.llm.sdk_call(lambda sdk: _read_results(sdk, batch_id))


async def _listed_since(sdk, start: float) -> list:
    """The batches created since `start` (wall clock), from the newest-first listing."""
    found = []
    async for batch in sdk.messages.batches.list(limit=100):
        if batch.created_at.timestamp() < start:
            break
        found.append(batch)
    return found


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
