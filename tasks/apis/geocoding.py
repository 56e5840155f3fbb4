"""Address validation with the Google Geocoding API (`GET /maps/api/geocode/json`).

Google answers HTTP 200 with the outcome in the body's `status`: `status_of` turns it into an
HTTP-like status so the engine's retry loop applies (OVER_QUERY_LIMIT -> 429: back off and retry;
UNKNOWN_ERROR -> 503: retry; REQUEST_DENIED -> 403: stop the run; INVALID_REQUEST -> 400: the row
fails). OK and ZERO_RESULTS are answers, cached by normalised address like every paid lookup.
"""
from __future__ import annotations

import re
from typing import Any

from tasks.apis.http import ApiClient
from tasks.engine.outcomes import RowError
from tasks.engine.tables import as_text

PATH = "/maps/api/geocode/json"
MAX_ADDRESS_CHARS = 500  # a longer "address" is not one; Google rejects long URLs anyway
RESULT_COLUMNS = ("found", "formatted_address", "lat", "lng", "location_type", "partial_match", "place_id")
STATUS_CODES = {"OK": 200, "ZERO_RESULTS": 200, "OVER_QUERY_LIMIT": 429, "OVER_DAILY_LIMIT": 403,
                "REQUEST_DENIED": 403, "INVALID_REQUEST": 400, "UNKNOWN_ERROR": 503}


def address_key(raw: Any) -> tuple[str, str]:
    """(cache key, problem): the address lower-cased with punctuation and spacing unified."""
    text = " ".join(as_text(raw).split())
    if not text:
        return "", "empty address"
    if len(text) > MAX_ADDRESS_CHARS:
        return "", f"address too long ({len(text):,} characters, at most {MAX_ADDRESS_CHARS})"
    key = re.sub(r"\s*([,;])\s*", ", ", re.sub(r"[.#]", " ", text.casefold()))
    return " ".join(key.split()).strip(", "), ""


def status_of(response) -> int:
    """The effective status of a Geocoding answer (HTTP errors stay as they are)."""
    if response.status_code != 200:
        return response.status_code
    try:
        return STATUS_CODES.get(response.json().get("status"), 502)
    except (ValueError, AttributeError):
        return 502


async def geocode(row: dict[str, Any], clients: dict[str, ApiClient]) -> dict[str, Any]:
    """Chunk-engine handler for one distinct address {key, address}."""
    response = await clients["geocoding"].request("GET", PATH, params={"address": row["address"]})
    body = response.json()
    if body["status"] == "ZERO_RESULTS" or not body.get("results"):
        return {"found": False, "formatted_address": "", "lat": None, "lng": None, "location_type": "",
                "partial_match": False, "place_id": ""}
    try:
        best = body["results"][0]
        location = best["geometry"]["location"]
        return {"found": True, "formatted_address": best.get("formatted_address", ""), "lat": location["lat"],
                "lng": location["lng"], "location_type": best["geometry"].get("location_type", ""),
                "partial_match": bool(best.get("partial_match", False)), "place_id": best.get("place_id", "")}
    except (KeyError, IndexError, TypeError):
        raise RowError(f"unexpected answer from the Geocoding API: {response.text[:200]!r}") from None
