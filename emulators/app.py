"""One ASGI app serving every emulated API, plus control routes under /_emulator."""
from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from emulators import cards, chat, claude, claude_batches, drive, geocoding, messaging, serper
from emulators.faults import ApiFaults

API_MODULES = [cards, serper, chat, claude, geocoding, messaging, drive]
EXTRA_ROUTES = [claude_batches]  # more routes of an API above (same NAME, same faults)


def build_app(settings: dict[str, dict[str, Any]] | None = None) -> Starlette:
    """Build the app; `settings` maps an API name to its initial Settings fields."""
    settings = settings or {}
    names = {module.NAME for module in API_MODULES}
    if unknown := set(settings) - names:
        raise ValueError(f"unknown emulated API(s) {', '.join(sorted(unknown))}; the emulators are "
                         f"{', '.join(sorted(names))} (python -m emulators --help)")
    apis = {module.NAME: getattr(module, "FAULTS", ApiFaults)(module.NAME, settings.get(module.NAME),
                                                             getattr(module, "COUNTERS", ()))
            for module in API_MODULES}

    def lookup(request: Request) -> ApiFaults:
        return apis[request.path_params["api"]]

    async def health(request: Request):
        return JSONResponse({"ok": True, "apis": sorted(apis)})

    async def stats(request: Request):
        window = float(request.query_params.get("window") or 0)
        return JSONResponse(lookup(request).stats(window or None))

    async def configure(request: Request):
        faults = lookup(request)
        try:
            faults.configure(await request.json())
        except ValueError as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        return JSONResponse(faults.stats()["settings"])

    async def reset(request: Request):
        for faults in apis.values():
            faults.reset()
        return JSONResponse({"ok": True})

    control = [
        Route("/_emulator/health", health),
        Route("/_emulator/reset", reset, methods=["POST"]),
        Route("/_emulator/{api}/stats", stats),
        Route("/_emulator/{api}/config", configure, methods=["PUT"]),
    ]
    routes = [route for module in API_MODULES + EXTRA_ROUTES for route in module.routes(apis[module.NAME])]
    return Starlette(routes=control + routes)
