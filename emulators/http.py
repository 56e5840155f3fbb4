"""Response plumbing shared by the emulated APIs: fault gate, accounting, JSON answers."""
from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Receive, Scope, Send

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
        wrong = misdirected(faults)
        status, body = wrong if wrong is not None else await answer()
        ok = None if wrong is None else False
        response = body if isinstance(body, Response) else JSONResponse(body, status_code=status, headers=headers)
    except Rejection as rejection:
        status, ok = rejection.status, False
        response = JSONResponse(rejection.body, status_code=status, headers={**(headers or {}), **rejection.headers})
    finally:
        faults.in_flight -= 1
    faults.record(key, status, generation, ok)
    return response


WEB_PAGE = "<html><head><title>Welcome</title></head><body><h1>It works!</h1></body></html>"


class CutAnswer(Response):
    """Headers and the start of a JSON body, then the connection closes (the server returns without
    finishing the answer it announced)."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")]})
        await send({"type": "http.response.body", "body": b'{"answer": [', "more_body": True})


def misdirected(faults: ApiFaults) -> tuple[int, Response] | None:
    """What a server that is not the API, or a broken one, answers instead (settings `moved_to`,
    `html_rate`, `cut_rate`); None to answer normally."""
    s = faults.settings
    if s.moved_to is not None:
        return s.moved_status, Response(status_code=s.moved_status, headers={"Location": s.moved_to})
    if faults.chance(s.html_rate):
        return 200, HTMLResponse(WEB_PAGE)
    if faults.chance(s.cut_rate):
        return 200, CutAnswer()
    return None


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
