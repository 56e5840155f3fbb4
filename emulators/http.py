"""Response plumbing shared by the emulated APIs: fault gate, accounting, JSON answers."""
from __future__ import annotations

from typing import Any, Awaitable, Callable

from starlette.responses import JSONResponse, Response

from emulators.faults import ApiFaults, Rejection


async def guarded(
    faults: ApiFaults,
    key: str | None,
    api_key: str | None,
    answer: Callable[[], Awaitable[tuple[int, Any]]],
) -> Response:
    """Run the fault gate, then `answer()` -> (status, JSON body); record the outcome."""
    generation = faults.generation
    faults.in_flight += 1
    faults.max_in_flight = max(faults.max_in_flight, faults.in_flight)
    try:
        await faults.gate(key, api_key)
        status, body = await answer()
        response = JSONResponse(body, status_code=status)
    except Rejection as rejection:
        status = rejection.status
        response = JSONResponse(rejection.body, status_code=status, headers=rejection.headers)
    finally:
        faults.in_flight -= 1
    faults.record(key, status, generation)
    return response
