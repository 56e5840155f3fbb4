"""The durable record of every Message Batch create request, written before the request leaves.

The Message Batches API has no idempotency key and no metadata on a batch, and a batch's custom_ids
show only in the results of an ended batch. What a listed batch does show is `created_at` and
`request_counts` (their sum is the number of requests). So each create is recorded first as an
`Intent` (its custom_ids, when each attempt left); its answer settles it. An intent left unsettled (the
process died, or the answer was lost) is matched against the batch list: a batch created in the
intent's window with as many requests, not held by another intent, is adopted *provisionally*, and
verified when its results arrive (they name the custom_ids); a wrong guess is rejected and the next
candidate tried. Only when no batch can match any more (the window is over) does the intent count
as never created (`void`), and only then are its requests sent again.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from tasks.engine.stores import SqliteStore


@dataclass(frozen=True)
class Intent:
    """A create request as recorded before it left. `batch_id` is the batch that answered
    (`verified`), or the one adopted provisionally; `rejected` the candidates whose results lacked
    its requests."""

    id: str
    custom_ids: tuple[str, ...]
    sent_at: float  # wall clock, before the first attempt left
    last_sent_at: float  # before the latest attempt left
    batch_id: str | None = None
    verified: bool = False
    rejected: tuple[str, ...] = ()

    def window(self, reach: float, skew: float) -> tuple[float, float]:
        """When the API can have created this batch: from the first attempt to `reach` seconds
        (how long one attempt may take) after the last, widened by `skew` (our clock against the API's)."""
        return self.sent_at - skew, self.last_sent_at + reach + skew

    def matches(self, window: tuple[float, float], created_at: datetime, requests: int) -> bool:
        return requests == len(self.custom_ids) and window[0] <= created_at.timestamp() <= window[1]


def request_total(batch) -> int:
    """The number of requests in a listed batch (the counts always add up to it)."""
    counts = batch.request_counts
    return counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired


class BatchIntents(SqliteStore):
    """Intents by id, and custom_id -> the latest intent that holds it."""

    TABLES = ("intents (id TEXT PRIMARY KEY, custom_ids TEXT, sent_at REAL, last_sent_at REAL, batch_id TEXT, "
              "verified INTEGER, rejected TEXT)",
              "intent_requests (custom_id TEXT PRIMARY KEY, intent TEXT)")

    def begin(self, custom_ids: list[str]) -> Intent:
        """Record a create about to leave (committed before this returns)."""
        now = time.time()
        intent = Intent(f"intent_{uuid.uuid4().hex}", tuple(custom_ids), now, now)

        def insert(db) -> None:
            db.execute("INSERT INTO intents VALUES (?, ?, ?, ?, NULL, 0, '[]')",
                       (intent.id, json.dumps(custom_ids), now, now))
            db.executemany("INSERT OR REPLACE INTO intent_requests VALUES (?, ?)", [(c, intent.id) for c in custom_ids])

        self.write(insert)
        return intent

    def attempt(self, intent_id: str) -> None:
        """Another attempt of the same create is about to leave."""
        self.write(lambda db: db.execute("UPDATE intents SET last_sent_at = ? WHERE id = ?", (time.time(), intent_id)))

    def get(self, intent_id: str) -> Intent | None:
        row = self.read(lambda db: db.execute("SELECT * FROM intents WHERE id = ?", (intent_id,)).fetchone())
        return _intent(row) if row else None

    def of(self, custom_id: str) -> Intent | None:
        """The latest intent that holds the request, if any."""
        row = self.read(lambda db: db.execute(
            "SELECT intents.* FROM intent_requests JOIN intents ON intents.id = intent_requests.intent "
            "WHERE intent_requests.custom_id = ?", (custom_id,)).fetchone())
        return _intent(row) if row else None

    def settle(self, intent_id: str, batch_id: str, verified: bool) -> None:
        """The batch answered for the intent, or its results hold the intent's requests (`verified`);
        or it is adopted provisionally (unless the intent is verified by then)."""
        self.write(lambda db: db.execute(
            "UPDATE intents SET batch_id = ?, verified = ? WHERE id = ? AND (? OR NOT verified)",
            (batch_id, int(verified), intent_id, int(verified))))

    def reject(self, intent_id: str, batch_id: str) -> None:
        """A provisionally adopted batch whose results lack the intent's requests: not ours."""
        def update(db) -> None:
            row = db.execute("SELECT rejected FROM intents WHERE id = ? AND NOT verified", (intent_id,)).fetchone()
            if row and batch_id not in (rejected := json.loads(row[0])):
                db.execute("UPDATE intents SET rejected = ?, batch_id = NULLIF(batch_id, ?) WHERE id = ?",
                           (json.dumps([*rejected, batch_id]), batch_id, intent_id))

        self.write(update)

    def void(self, intent_id: str) -> None:
        """No batch was created for the intent: its requests may be sent again."""
        def delete(db) -> None:
            db.execute("DELETE FROM intent_requests WHERE intent = ?", (intent_id,))
            db.execute("DELETE FROM intents WHERE id = ?", (intent_id,))

        self.write(delete)

    def held(self, batch_ids: list[str]) -> set[str]:
        """Those of `batch_ids` that answered for, or were verified for, an intent."""
        if not batch_ids:
            return set()
        rows = self.read(lambda db: db.execute(
            f"SELECT batch_id FROM intents WHERE verified = 1 AND batch_id IN ({','.join('?' * len(batch_ids))})",
            batch_ids).fetchall())
        return {row[0] for row in rows}


def _intent(row: tuple) -> Intent:
    intent_id, custom_ids, sent_at, last_sent_at, batch_id, verified, rejected = row
    return Intent(intent_id, tuple(json.loads(custom_ids)), sent_at, last_sent_at, batch_id, bool(verified),
                  tuple(json.loads(rejected)))
