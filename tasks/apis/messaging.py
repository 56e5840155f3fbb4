"""Sending messages exactly once, across chunk retries, reruns and a `kill -9` mid-send.

Each message has a deterministic idempotency key (request id + template version), sent as the
`Idempotency-Key` header. An outbox (SQLite on the flow side, `OutboxHooks`) marks every key of a
chunk `pending` before the chunk is sent to a worker and `sent` with the provider's id when the
row comes back. A key found `sent` is never sent again; a key found `pending` (a process died, or an
answer was lost to a timeout or 5xx) is first looked up at the provider (`GET
/v1/messages?idempotency_key=`): delivered -> recorded, not re-sent. Workers keep no state.
"""
from __future__ import annotations

import asyncio
import hashlib
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email

from tasks.apis.http import ApiClient, RetryPolicy
from tasks.engine.outcomes import RowError
from tasks.engine.stores import SqliteStore

PATH = "/v1/messages"
RESULT_COLUMNS = ("message_status", "provider_id")
GMAIL_DOMAINS = ("gmail.com", "googlemail.com")  # one mailbox whatever the dots and +tag (Google's rule)


class InvalidEmail(ValueError):
    """Not an address a message can be sent to; the message says why."""


@dataclass(frozen=True)
class EmailAddress:
    """A checked address: its domain, and the `mailbox` every spelling of that mailbox shares."""

    domain: str  # ASCII (IDNA), lower case: 'xn--mnchen-3ya.de'
    mailbox: str  # the local part in lower case @ the domain; at Gmail without dots or +tag, @gmail.com


def parse_email(text: str) -> EmailAddress:
    """Check the syntax with email-validator (no DNS, no deliverability check) and normalise it."""
    try:
        checked = validate_email(text.strip(), check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidEmail(str(error)) from None
    domain = (checked.ascii_domain or checked.domain).lower()
    local = checked.local_part.lower()
    if domain in GMAIL_DOMAINS:
        return EmailAddress(domain, f"{local.split('+', 1)[0].replace('.', '')}@{GMAIL_DOMAINS[0]}")
    return EmailAddress(domain, f"{local}@{domain}")


class MailboxRegister:
    """The first row of each mailbox, in the order rows are added; `repeats` maps every other
    spelling of a mailbox already seen ('Ann@ACME.com' after 'ann@acme.com') to that first row."""

    def __init__(self) -> None:
        self.first: dict[str, tuple[str, int]] = {}  # mailbox -> (spelling, row)
        self.repeats: dict[str, int] = {}

    def add(self, spelling: str, row: int) -> bool:
        """Register a valid address; False when its mailbox was seen at an earlier row."""
        spelling = spelling.strip()
        first_spelling, first_row = self.first.setdefault(parse_email(spelling).mailbox, (spelling, row))
        if first_row == row:
            return True
        if spelling != first_spelling:
            self.repeats.setdefault(spelling, first_row)
        return False


def is_email(text: str) -> bool:
    """An address a message can be sent to (syntax only: see `parse_email`)."""
    try:
        parse_email(text)
    except InvalidEmail:
        return False
    return True


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

    def mark_pending(self, keys: list[str]) -> None:
        """One commit for a chunk's keys (never over a `sent` one)."""
        with closing(self._connect()) as db, db:
            db.executemany("INSERT OR IGNORE INTO outbox VALUES (?, 'pending', '', '', ?)", [(k, time.time()) for k in keys])


class OutboxHooks:
    """The flow side of sending (the engine's `RowHooks`): rows whose key was sent before are
    answered from the outbox; the others are marked pending before their chunk leaves, with
    `_ask_first` set when an earlier try may have reached the provider."""

    def __init__(self, path: str | Path):
        self.box = Outbox.shared(str(path))

    def prepare(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        send, known = [], []
        for row in rows:
            state = self.box.get(row["idempotency_key"])
            if state and state[0] == "sent":
                known.append({"row": row["_row"], "status": "ok", "error": "",
                              "result": {"message_status": state[2], "provider_id": state[1]}})
            else:
                send.append({**row, "_ask_first": state is not None})
        self.box.mark_pending([row["idempotency_key"] for row in send])
        return send, known

    def finished(self, row: dict[str, Any], record: dict[str, Any]) -> None:
        if record["status"] == "ok":
            result = record["result"]
            self.box.record(row["idempotency_key"], "sent", result["provider_id"], result["message_status"])

    def flush(self) -> None:
        pass


async def _delivered(api: ApiClient, key: str) -> dict[str, Any] | None:
    """The provider's record of the key, or None if it never got it."""
    try:
        response = await api.request("GET", PATH, params={"idempotency_key": key})
    except RowError as error:
        if error.status == 404:
            return None
        raise
    return response.json()


async def send_message(row: dict[str, Any], clients: dict[str, ApiClient], attempts: int = 5) -> dict[str, Any]:
    """Chunk-engine handler for one message {idempotency_key, to, channel, body, _ask_first}; `_retry`:
    an earlier try of the chunk (a crash, a lost worker) may have sent it."""
    api, key = clients["messaging"], row["idempotency_key"]
    asked = row.get("_ask_first") or row.get("_retry")
    found = await _delivered(api, key) if asked else None  # did an earlier try get through?
    if found is None:
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
    return {"message_status": found.get("status", ""), "provider_id": found.get("id", "")}
