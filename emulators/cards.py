"""Card-recommendation API: POST /v1/recommendations with X-API-Key, JSON profile in, cards out."""
from __future__ import annotations

import hashlib
import json
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from emulators.faults import ApiFaults, Rejection
from emulators.http import guarded, json_body

NAME = "cards"

CATALOGUE = [  # (card, issuer, category it rewards, cashback rate, min credit score)
    ("Everyday Cash", "Northwind Bank", "groceries", 0.03, 580),
    ("Fuel Saver", "Contoso Credit", "fuel", 0.05, 600),
    ("Jet Miles Plus", "Fabrikam Financial", "travel", 0.04, 680),
    ("Dine Out Rewards", "Northwind Bank", "dining", 0.04, 640),
    ("Click & Save", "Tailspin Card Co", "online", 0.05, 620),
    ("Home Basics", "Contoso Credit", "utilities", 0.02, 550),
    ("Flat 1.5", "Fabrikam Financial", "*", 0.015, 500),
    ("Premium Elite", "Woodgrove Bank", "*", 0.025, 750),
]

NUMBER_FIELDS = ("monthly_spend", "credit_score")


def _invalid(field: str, message: str, kind: str) -> Rejection:
    return Rejection(422, {"detail": [{"loc": ["body", field], "msg": message, "type": kind}]})


def validate(body: Any) -> dict[str, Any]:
    """Check the profile like a FastAPI model would; 422 with pydantic-style details otherwise."""
    if not isinstance(body, dict):
        raise Rejection(422, {"detail": [{"loc": ["body"], "msg": "Input should be an object", "type": "dict_type"}]})
    user_id = body.get("user_id")
    if user_id is None or str(user_id).strip() == "":
        raise _invalid("user_id", "Field required", "missing")
    for name in NUMBER_FIELDS:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _invalid(name, "Input should be a valid number", "float_type")
        if value < 0:
            raise _invalid(name, "Input should be greater than or equal to 0", "greater_than_equal")
    return body


def recommend(profile: dict[str, Any]) -> dict[str, Any]:
    """Deterministic recommendations: the same body always gives the same answer."""
    spend = float(profile.get("monthly_spend") or 0)
    score = int(profile.get("credit_score") or 650)
    category = str(profile.get("top_category") or "").strip().lower()
    digest = hashlib.sha256(json.dumps(profile, sort_keys=True, default=str).encode()).digest()
    picks = []
    for index, (card, issuer, rewarded, rate, min_score) in enumerate(CATALOGUE):
        if score < min_score:
            continue
        share = 0.6 if rewarded == category else (1.0 if rewarded == "*" else 0.1)
        savings = round(spend * 12 * share * rate + digest[index] / 100, 2)
        reason = (
            f"{rate:.1%} back on {rewarded}, your top category" if rewarded == category
            else f"{rate:.1%} back on everything" if rewarded == "*"
            else f"{rate:.1%} back on {rewarded}"
        )
        picks.append({"card_name": card, "issuer": issuer, "annual_savings": savings, "reason": reason})
    picks.sort(key=lambda card: (-card["annual_savings"], card["card_name"]))
    return {"user_id": profile["user_id"], "recommendations": picks[:3]}


def routes(faults: ApiFaults) -> list[Route]:
    async def recommendations(request: Request):
        body = await json_body(request)
        key = str(body.get("user_id")) if isinstance(body, dict) and "user_id" in body else None

        async def answer():
            if body is None:
                raise Rejection(422, {"detail": [{"loc": ["body"], "msg": "JSON decode error", "type": "json_invalid"}]})
            return 200, recommend(validate(body))

        return await guarded(faults, key, request.headers.get("x-api-key"), answer)

    return [Route("/v1/recommendations", recommendations, methods=["POST"])]
