"""Response plumbing shared by the emulated APIs: fault gate, accounting, JSON answers."""
from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from emulators.faults import ApiFaults, Rejection


async def guarded(
    faults: ApiFaults,
    key: str | None,
    api_key: str | None,
    answer: Callable[[], Awaitable[tuple[int, Any]]],
    tokens: int = 0,
    error_body: Callable[[int, Any], Any] | None = None,
    headers: dict[str, str] | None = None,
    on_rejection: Callable[[Rejection], Rejection] | None = None,
) -> Response:
    """Run the fault gate, then `answer()` -> (status, JSON body or a ready Response); record the outcome.

    `error_body(status, generic_body)` lets an API answer failures in its own error shape;
    `on_rejection(rejection)` replaces a gate rejection wholesale (status, body, headers: e.g. Google's
    HTTP 200 + error status); `headers` are added to every answer (e.g. rate-limit headers)."""
    generation = faults.generation
    faults.in_flight += 1
    faults.max_in_flight = max(faults.max_in_flight, faults.in_flight)
    try:
        try:
            await faults.gate(key, api_key, tokens)
        except Rejection as injected:  # the gate's generic body, in this API's error shape
            if error_body is not None:
                injected.body = error_body(injected.status, injected.body)
            if on_rejection is not None:
                raise on_rejection(injected) from None
            raise
        status, body = await answer()
        ok = None
        response = body if isinstance(body, Response) else JSONResponse(body, status_code=status, headers=headers)
    except Rejection as rejection:
        status, ok = rejection.status, False
        response = JSONResponse(rejection.body, status_code=status, headers={**(headers or {}), **rejection.headers})
    finally:
        faults.in_flight -= 1
    faults.record(key, status, generation, ok)
    return response


async def json_body(request: Request) -> Any:
    """The parsed JSON body, or None when it is not JSON."""
    try:
        return json.loads(await request.body())
    except ValueError:
        return None


def json_object(body: Any) -> dict:
    return body if isinstance(body, dict) else {}


def bearer_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth[7:] if auth.lower().startswith("bearer ") else None
