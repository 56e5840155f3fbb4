"""Serper search API: POST /search with X-API-KEY, {"q": ...} in, Google-like results out."""
from __future__ import annotations

import hashlib

from starlette.requests import Request
from starlette.routing import Route

from emulators.faults import ApiFaults, Rejection
from emulators.http import guarded, json_body, json_object

NAME = "serper"


def search_results(query: str, num: int = 10) -> dict:
    """Deterministic results for a query: the same q always gives the same pages."""
    digest = hashlib.sha256(query.encode()).hexdigest()
    words = [w for w in query.replace('"', " ").split() if w.isalnum()] or ["company"]
    topic = " ".join(words[:3]).title()
    domain = next((w for w in query.split() if "." in w and not w.startswith(".")), f"{words[0].lower()}.com")
    organic = [{
        "title": f"{topic} — {kind}",
        "link": f"https://{domain}/{kind.lower().replace(' ', '-')}",
        "snippet": f"{topic} {detail} (ref {digest[i * 4:i * 4 + 6]}).",
        "position": i + 1,
    } for i, (kind, detail) in enumerate([
        ("About us", "builds software for mid-sized logistics teams and was founded in 2014"),
        ("News", "announced a new partnership and opened an office in Lisbon this year"),
        ("Careers", "is hiring engineers and account managers across Europe"),
        ("Customers", "serves more than 300 customers, from retailers to manufacturers"),
        ("Blog", "writes about automation, pricing and operations"),
    ][:max(1, min(num, 5))])]
    return {
        "searchParameters": {"q": query, "type": "search", "engine": "google", "num": num},
        "knowledgeGraph": {"title": topic, "type": "Company", "website": f"https://{domain}",
                           "description": f"{topic} is a company headquartered in Lisbon."},
        "organic": organic,
        "credits": 1,
    }


def serper_error(status: int, body) -> dict:
    detail = body.get("detail") if isinstance(body, dict) else str(body)
    return {"message": detail if status != 401 else "Unauthorized.", "statusCode": status}


def routes(faults: ApiFaults) -> list[Route]:
    async def search(request: Request):
        body = json_object(await json_body(request))
        query = body.get("q")

        async def answer():
            if not isinstance(query, str) or not query.strip():
                raise Rejection(400, {"message": "Missing query parameter 'q'.", "statusCode": 400})
            return 200, search_results(query, int(body.get("num", 10)))

        return await guarded(faults, query, request.headers.get("x-api-key"), answer, error_body=serper_error)

    return [Route("/search", search, methods=["POST"])]
