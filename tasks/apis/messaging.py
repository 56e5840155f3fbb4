"""Sending messages exactly once, across chunk retries, reruns and a `kill -9` mid-send.

Each message has a deterministic idempotency key (request id + template version), sent as the
`Idempotency-Key` header. An outbox (SQLite under the work dir) records the key as `pending` before
the request and `sent` with the provider's id after it. A key found `sent` is never sent again; a
key left `pending` (the process died, or the answer was lost to a timeout or 5xx) is first looked up
at the provider (`GET /v1/messages?idempotency_key=`): delivered -> recorded, not re-sent.
"""
from __future__ import annotations

import asyncio
import hashlib
import re
import time
from contextlib import closing
from typing import Any

from tasks.apis.http import ApiClient, RetryPolicy
from tasks.engine.outcomes import RowError
from tasks.engine.stores import SqliteStore

PATH = "/v1/messages"
RESULT_COLUMNS = ("message_status", "provider_id")


def is_email(text: str) -> bool:
    """Looks like an address a message can be sent to: local@domain.tld, no spaces."""
    return re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", text) is not None


def idempotency_key(request_id: str, template_version: str) -> str:
    return hashlib.sha256(f"{request_id}\0{template_version}".encode()).hexdigest()[:32]


class Outbox(SqliteStore):
    """key -> (state, provider id, status); one row per message, committed before each send."""

    TABLES = ("outbox (key TEXT PRIMARY KEY, state TEXT, provider_id TEXT, status TEXT, updated REAL)",)

    def get(self, key: str) -> tuple[str, str, str] | None:
        with closing(self._connect()) as db:
            return db.execute("SELECT state, provider_id, status FROM outbox WHERE key = ?", (key,)).fetchone()

    def record(self, key: str, state: str, provider_id: str = "", status: str = "") -> None:
        with closing(self._connect()) as db, db:
            db.execute("INSERT OR REPLACE INTO outbox VALUES (?, ?, ?, ?, ?)", (key, state, provider_id, status, time.time()))


async def _delivered(api: ApiClient, key: str) -> dict[str, Any] | None:
    """The provider's record of the key, or None if it never got it."""
    try:
        response = await api.request("GET", PATH, params={"idempotency_key": key})
    except RowError as error:
        if str(error).startswith("HTTP 404"):
            return None
        raise
    return response.json()


async def send_message(row: dict[str, Any], clients: dict[str, ApiClient], *, outbox: str,
                       attempts: int = 5) -> dict[str, Any]:
    """Chunk-engine handler for one message {idempotency_key, to, channel, body}."""
    api, box, key = clients["messaging"], Outbox.shared(outbox), row["idempotency_key"]
    known = box.get(key)
    if known and known[0] == "sent":
        return {"message_status": known[2], "provider_id": known[1]}
    found = await _delivered(api, key) if known else None  # pending: did the last try get through?
    if found is None:
        box.record(key, "pending")
        body = {"to": row["to"], "channel": row["channel"], "body": row["body"]}
        for attempt in range(1, attempts + 1):
            try:  # one POST per attempt: after an unclear failure, ask before sending again
                found = (await api.request("POST", PATH, json=body, headers={"Idempotency-Key": key})).json()
                break
            except RowError as error:
                if not error.retryable or attempt == attempts:
                    raise
                await asyncio.sleep(RetryPolicy().backoff(attempt))
                if (found := await _delivered(api, key)) is not None:
                    break
    box.record(key, "sent", found.get("id", ""), found.get("status", ""))
    return {"message_status": found.get("status", ""), "provider_id": found.get("id", "")}
