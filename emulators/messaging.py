"""SMS/email provider with Stripe-like idempotency, under /messaging (Anthropic owns /v1/messages).

`POST /messaging/v1/messages` (bearer key, required `Idempotency-Key`) delivers a message once per
key: a repeat with the same body replays the stored answer (200, `Idempotent-Replayed: true`), a
different body is 422. `GET /messaging/v1/messages?idempotency_key=K` returns the stored message or
404. `lose_answer_rate` delivers, then loses the answer (a 5xx, or a hang for 504) as a network would.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
import uuid

from starlette.requests import Request
from starlette.routing import Route

from emulators.faults import ApiFaults, Rejection
from emulators.http import bearer_key, guarded, json_body

NAME = "messaging"
COUNTERS = ("delivered", "duplicates", "conflicts", "lookups", "lost_answers")
PATH = "/messaging/v1/messages"
PHONE = re.compile(r"\+[1-9]\d{1,14}")  # E.164
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MAX_SMS_CHARS = 1600
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
               422: "invalid_request_error", 429: "rate_limit_error"}


def error(status: int, message: str, code: str | None = None, param: str | None = None,
          kind: str | None = None) -> Rejection:
    kind = kind or ERROR_TYPES.get(status, "api_error")
    return Rejection(status, {"error": {"type": kind, "code": code, "param": param, "message": message}})


def provider_error(status: int, body) -> dict:
    """The gate's generic failures (401, 429, 5xx) in this provider's error shape."""
    detail = body.get("detail") if isinstance(body, dict) else str(body)
    return error(status, str(detail)).body


def validate(body) -> dict:
    """The message fields, or a 422 naming the bad one."""
    if not isinstance(body, dict):
        raise error(422, "The body must be a JSON object.", "invalid_body")
    channel, to, text = body.get("channel"), body.get("to"), body.get("body")
    if channel not in ("sms", "email"):
        raise error(422, "channel must be 'sms' or 'email'.", "invalid_channel", "channel")
    if channel == "sms" and not (isinstance(to, str) and PHONE.fullmatch(to)):
        raise error(422, f"{to!r} is not a phone number in E.164 format (+15551234567).", "invalid_phone_number", "to")
    if channel == "email" and not (isinstance(to, str) and EMAIL.fullmatch(to)):
        raise error(422, f"{to!r} is not an email address.", "invalid_email", "to")
    if not isinstance(text, str) or not text.strip():
        raise error(422, "body must be a non-empty string.", "empty_body", "body")
    if channel == "sms" and len(text) > MAX_SMS_CHARS:
        raise error(422, f"An SMS body has at most {MAX_SMS_CHARS} characters.", "body_too_long", "body")
    if not isinstance(body.get("metadata", {}), dict):
        raise error(422, "metadata must be an object.", "invalid_metadata", "metadata")
    return body


def routes(faults: ApiFaults) -> list[Route]:
    async def send(request: Request):
        key = request.headers.get("idempotency-key") or None
        body = await json_body(request)
        headers: dict[str, str] = {}  # filled in by answer(): guarded() sends them with its answer

        async def answer():
            if key is None:
                raise error(400, "An Idempotency-Key header is required.", "idempotency_key_missing")
            fingerprint = json.dumps(body, sort_keys=True)
            stored = faults.memory.get(key)
            if stored is not None:
                if stored[0] != fingerprint:
                    faults.counters["conflicts"] += 1
                    raise error(422, "Keys for idempotent requests can only be used with the same body they "
                                "were first used with.", "idempotency_key_reused", kind="idempotency_error")
                faults.counters["duplicates"] += 1
                headers["Idempotent-Replayed"] = "true"
                return 200, stored[1]
            message = validate(body)
            sent = {"id": f"msg_{uuid.uuid4().hex[:24]}", "object": "message", "status": "queued",
                    "to": message["to"], "channel": message["channel"], "metadata": message.get("metadata", {}),
                    "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            faults.memory[key] = (fingerprint, sent)  # delivered: whatever happens to the answer now
            faults.counters["delivered"] += 1
            settings = faults.settings
            if faults.chance(settings.lose_answer_rate):
                faults.counters["lost_answers"] += 1
                status = faults.pick(settings.error_statuses)
                if status == 504:
                    await asyncio.sleep(settings.hang_seconds)
                raise error(status, "The answer was lost after the message was delivered.")
            return 201, sent

        return await guarded(faults, key, bearer_key(request), answer, error_body=provider_error, headers=headers)

    async def lookup(request: Request):
        key = request.query_params.get("idempotency_key")

        async def answer():
            if not key:
                raise error(400, "The idempotency_key query parameter is required.", "parameter_missing",
                            "idempotency_key")
            faults.counters["lookups"] += 1
            if key not in faults.memory:
                raise error(404, f"No message was sent with idempotency key {key!r}.", "resource_missing")
            return 200, faults.memory[key][1]

        return await guarded(faults, None, bearer_key(request), answer, error_body=provider_error)

    return [Route(PATH, send, methods=["POST"]), Route(PATH, lookup, methods=["GET"])]
