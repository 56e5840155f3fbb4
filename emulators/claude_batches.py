"""Anthropic Message Batches API under /v1/messages/batches, as the real one answers.

Create (up to 256 MB / 100,000 requests), retrieve, list (newest first; `limit`, `after_id`,
`before_id`), cancel, delete and results (JSONL at the absolute `results_url`). Requests are answered by
the Messages "model" (claude.respond, usage with `service_tier: batch`) in the background; a batch is
`in_progress` for `batch_seconds`, then `ended`. `batch_error_rate` / `batch_expire_rate` make results
`errored` (api_error or overloaded_error) or `expired`; a cancel ends the batch soon with the requests
not done by then `canceled`; invalid params come back `errored` with an invalid_request_error.
`batch_answer_delay` holds a create's answer back after the batch exists (a client killed meanwhile
never learns its id) and `batch_answer_lost_rate` answers that share of creates with a 500 although
the batch exists: what a client sees when the answer is lost on the way.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulators.claude import NAME, Prompt, anthropic_error, api_key, failure, read_json, respond
from emulators.faults import ApiFaults, Rejection
from emulators.http import guarded, json_object

__all__ = ["NAME", "routes"]
MAX_BATCH_BYTES = 256 * 1024 * 1024
MAX_REQUESTS = 100_000
CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
CANCEL_SECONDS = 0.5  # a canceled batch is `canceling` this long, then `ended`
DAY = 24 * 3600
INJECTED = {"api_error": "Internal server error", "overloaded_error": "Overloaded"}


@dataclass
class Batch:
    id: str
    created: float  # wall-clock seconds
    ends: float  # when processing ends (pushed back if answering the requests takes longer)
    pending: list[tuple[str, dict, str | None, float]]  # (custom_id, params, injected outcome, done at)
    size: int = 0
    results: list[tuple[str, dict, float]] | None = None  # (custom_id, result, done at), once answered
    canceled: float | None = None
    task: asyncio.Task | None = field(default=None, repr=False)

    def ended(self, now: float) -> bool:
        return self.results is not None and now >= self.ends

    def outcomes(self) -> list[tuple[str, dict]]:
        """Each request's result, `canceled` where the cancel came before it was done."""
        return [(custom_id, {"type": "canceled"} if self.canceled is not None and done > self.canceled else result)
                for custom_id, result, done in self.results or []]

    def view(self, now: float, base_url: str) -> dict:
        ended = self.ended(now)
        counts = Counter(result["type"] for _, result in self.outcomes()) if ended else Counter()
        return {"id": self.id, "type": "message_batch",
                "processing_status": "ended" if ended else "canceling" if self.canceled else "in_progress",
                "request_counts": {"processing": 0 if ended else self.size, "succeeded": counts["succeeded"],
                                   "errored": counts["errored"], "canceled": counts["canceled"],
                                   "expired": counts["expired"]},
                "ended_at": _iso(self.ends) if ended else None,
                "created_at": _iso(self.created), "expires_at": _iso(self.created + DAY),
                "archived_at": None, "cancel_initiated_at": _iso(self.canceled) if self.canceled else None,
                "results_url": f"{base_url}v1/messages/batches/{self.id}/results" if ended else None}


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


def _errored(error: dict) -> dict:
    return {"type": "errored", "error": {**error, "request_id": f"req_{uuid.uuid4().hex[:24]}"}}


def _read(params: dict) -> Prompt | Rejection:
    try:
        return Prompt(params)
    except Rejection as rejection:
        return rejection
    except Exception:  # what /v1/messages would answer with a 500: here an errored result, the batch ends
        return failure(500, INJECTED["api_error"])


async def _process(batch: Batch, faults: ApiFaults) -> None:
    """Answer every request (prompts read in a thread: PDFs take CPU), then store the results."""
    generation = faults.generation
    prompts = iter(await asyncio.to_thread(
        lambda: [_read(params) for _, params, outcome, _ in batch.pending if outcome is None]))
    if generation != faults.generation:  # reset meanwhile: the batch is gone
        return
    results = []
    for custom_id, _, outcome, done in batch.pending:
        if outcome == "expired":
            result = {"type": "expired"}
        elif outcome is not None:
            result = _errored(anthropic_error(500 if outcome == "api_error" else 529, INJECTED[outcome]))
        elif isinstance(prompt := next(prompts), Rejection):
            result = _errored(prompt.body)
        else:
            try:
                result = {"type": "succeeded", "message": respond(prompt, faults, tier="batch")}
            except Exception:  # as in _read
                result = _errored(anthropic_error(500, INJECTED["api_error"]))
        results.append((custom_id, result, done))
    batch.results, batch.pending, batch.ends = results, [], max(batch.ends, time.time())


def routes(faults: ApiFaults) -> list[Route]:
    def store() -> dict[str, Batch]:  # a reset empties memory: batches start afresh
        return faults.memory.setdefault("batches", {})

    def find(request: Request) -> Batch:
        batch = store().get(request.path_params["batch_id"])
        if batch is None:
            raise failure(404, f"message_batch {request.path_params['batch_id']!r} not found")
        return batch

    async def serve(request: Request, answer):
        return await guarded(faults, None, api_key(request), answer, error_body=anthropic_error,
                             headers={"request-id": f"req_{uuid.uuid4().hex[:24]}"})

    async def create(request: Request):
        body, too_large = await read_json(request, MAX_BATCH_BYTES)
        requests = json_object(body).get("requests")

        async def answer():
            if too_large:
                raise failure(413, "Request exceeds the maximum size")
            if not isinstance(requests, list) or not requests:
                raise failure(400, "requests: List should have at least 1 item after validation, not 0")
            if len(requests) > MAX_REQUESTS:
                raise failure(400, f"requests: List should have at most {MAX_REQUESTS} items after validation")
            seen = set()
            for n, item in enumerate(requests):
                custom_id = item.get("custom_id") if isinstance(item, dict) else None
                if not isinstance(custom_id, str) or not CUSTOM_ID.fullmatch(custom_id):
                    raise failure(400, f"requests.{n}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
                if custom_id in seen:
                    raise failure(400, f"requests.{n}.custom_id: Duplicate custom_id '{custom_id}'")
                if not isinstance(item.get("params"), dict):
                    raise failure(400, f"requests.{n}.params: Field required")
                seen.add(custom_id)
            now, s = time.time(), faults.settings
            pending = []
            for item in requests:  # outcomes drawn here, on the loop, from the API's seeded random source
                outcome = ("expired" if faults.chance(s.batch_expire_rate) else
                           faults.pick(list(INJECTED)) if faults.chance(s.batch_error_rate) else None)
                done = now + faults.pick(range(1001)) / 1000 * s.batch_seconds
                pending.append((item["custom_id"], item["params"], outcome, done))
            batch = Batch(f"msgbatch_{uuid.uuid4().hex[:24]}", now, now + s.batch_seconds, pending, len(pending))
            batch.task = asyncio.create_task(_process(batch, faults))
            store()[batch.id] = batch
            faults.counters["batches_created"] += 1
            faults.counters["batch_requests"] += len(requests)
            if s.batch_answer_delay:
                await asyncio.sleep(s.batch_answer_delay)
            if faults.chance(s.batch_answer_lost_rate):
                raise failure(500, INJECTED["api_error"])
            return 200, batch.view(now, str(request.base_url))

        return await serve(request, answer)

    async def retrieve(request: Request):
        async def answer():
            return 200, find(request).view(time.time(), str(request.base_url))

        return await serve(request, answer)

    async def listing(request: Request):
        query = request.query_params

        async def answer():
            try:
                limit = int(query.get("limit", 20))
            except ValueError:
                limit = 0
            if not 1 <= limit <= 1000:
                raise failure(400, "limit: Input should be between 1 and 1000")
            newest = list(reversed(store().values()))
            ids = [batch.id for batch in newest]
            for cursor in ("after_id", "before_id"):
                if query.get(cursor) and query[cursor] not in ids:
                    raise failure(404, f"message_batch {query[cursor]!r} not found")
            if query.get("before_id"):
                end = ids.index(query["before_id"])
                page, more = newest[max(0, end - limit):end], end > limit
            else:
                start = ids.index(query["after_id"]) + 1 if query.get("after_id") else 0
                page, more = newest[start:start + limit], start + limit < len(newest)
            now = time.time()
            return 200, {"data": [batch.view(now, str(request.base_url)) for batch in page], "has_more": more,
                         "first_id": page[0].id if page else None, "last_id": page[-1].id if page else None}

        return await serve(request, answer)

    async def cancel(request: Request):
        async def answer():
            batch, now = find(request), time.time()
            if batch.ended(now):
                raise failure(400, f"message_batch {batch.id!r} has ended and can no longer be canceled")
            if batch.canceled is None:
                batch.canceled, batch.ends = now, min(batch.ends, now + CANCEL_SECONDS)
            return 200, batch.view(now, str(request.base_url))

        return await serve(request, answer)

    async def delete(request: Request):
        async def answer():
            batch = find(request)
            if not batch.ended(time.time()):
                raise failure(400, f"message_batch {batch.id!r} is still processing: cancel it first")
            del store()[batch.id]
            return 200, {"id": batch.id, "type": "message_batch_deleted"}

        return await serve(request, answer)

    async def results(request: Request):
        lines: list[str] = []

        async def answer():
            batch = find(request)
            if not batch.ended(time.time()):
                raise failure(400, f"message_batch {batch.id!r} is still processing: no results yet")
            lines.extend(json.dumps({"custom_id": custom_id, "result": result}) + "\n"
                         for custom_id, result in batch.outcomes())
            faults.counters["batch_results"] += len(lines)
            return 200, None

        response = await serve(request, answer)
        if response.status_code != 200:
            return response
        return Response("".join(lines), media_type="application/x-jsonl",
                        headers={"request-id": response.headers["request-id"]})

    path = "/v1/messages/batches"
    return [Route(path, create, methods=["POST"]), Route(path, listing, methods=["GET"]),
            Route(path + "/{batch_id}", retrieve, methods=["GET"]),
            Route(path + "/{batch_id}", delete, methods=["DELETE"]),
            Route(path + "/{batch_id}/cancel", cancel, methods=["POST"]),
            Route(path + "/{batch_id}/results", results, methods=["GET"])]
