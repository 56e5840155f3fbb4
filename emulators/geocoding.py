"""Google Geocoding API: GET /maps/api/geocode/json?address=...&key=..., outcome in the body's `status`.

Like Google, errors other than INVALID_REQUEST (HTTP 400) come as HTTP 200 with `status` and
`error_message`: a wrong key is REQUEST_DENIED, the rate limit OVER_QUERY_LIMIT (no Retry-After),
an injected 500 UNKNOWN_ERROR; other injected 5xx (502/503, 504 after a hang) keep their HTTP status.
"""
from __future__ import annotations

import base64
import hashlib
import re

from starlette.requests import Request
from starlette.routing import Route

from emulators.faults import ApiFaults, Rejection
from emulators.http import guarded

NAME = "geocoding"
COUNTERS = ("OK", "ZERO_RESULTS", "OVER_QUERY_LIMIT", "REQUEST_DENIED", "INVALID_REQUEST", "UNKNOWN_ERROR")
MAX_ADDRESS_CHARS = 1000  # longer text matches nothing: ZERO_RESULTS
MISSING_KEY = ("You must use an API key to authenticate each request to Google Maps Platform APIs. "
               "For additional information, please refer to http://g.co/dev/maps-no-account")
MESSAGES = {
    "REQUEST_DENIED": "The provided API key is invalid.",
    "OVER_QUERY_LIMIT": "You have exceeded your rate-limit for this API.",
    "INVALID_REQUEST": "Invalid request. Missing the 'address', 'components', 'latlng' or 'place_id' parameter.",
    "UNKNOWN_ERROR": "An unknown error occurred. Please try again.",
}
STREET_WORDS = {"st", "street", "ave", "avenue", "rd", "road", "blvd", "boulevard", "ln", "lane", "dr", "drive",
                "way", "pkwy", "parkway", "pl", "place", "ct", "court", "sq", "square", "hwy", "highway", "rue",
                "via", "calle", "str", "strasse", "straße", "út", "utca", "weg", "laan", "gasse", "allee"}
HOUSE_NUMBER = re.compile(r"\d{1,4}[a-z]?(?:-\d{1,4}[a-z]?)?")
LADDER = (["locality", "political"], ["administrative_area_level_1", "political"], ["country", "political"])
SPAN = {"ROOFTOP": 0.0014, "RANGE_INTERPOLATED": 0.0014, "GEOMETRIC_CENTER": 0.006, "APPROXIMATE": 0.12}


def normalise(address: str) -> str:
    """Lower-case, one space between words, ", " between parts: the key for results and accounting."""
    parts = (" ".join(part.split()) for part in address.lower().replace(";", ",").split(","))
    return ", ".join(part for part in parts if part)


def looks_like_gibberish(text: str) -> bool:
    """No place name in it: too long, no vowels to speak of, or letters and digits jumbled ("asd4n2gn")."""
    letters = [c for c in text if c.isalpha()]
    if len(text) > MAX_ADDRESS_CHARS or len(letters) < 2:
        return True
    if sum(c in "aeiouyäöüéèáíóúå" for c in letters) < 0.2 * len(letters):
        return True
    return any(len(re.findall(r"[^\W\d_]+|\d+", word)) > 3 for word in text.split())


def _point(text: str) -> tuple[float, float]:
    digest = hashlib.sha256(text.encode()).digest()
    lat = -55 + int.from_bytes(digest[:4], "big") / 2**32 * 125
    lng = -180 + int.from_bytes(digest[4:8], "big") / 2**32 * 360
    return lat, lng


def _component(name: str, types: list[str]) -> dict:
    return {"long_name": name, "short_name": name, "types": types}


def _title(part: str) -> str:
    return part.upper() if len(part) <= 3 and part.isalpha() else " ".join(w.capitalize() for w in part.split())


def geocode(key: str) -> dict:
    """One deterministic result for a normalised address (or ZERO_RESULTS for gibberish)."""
    if looks_like_gibberish(key):
        return {"results": [], "status": "ZERO_RESULTS"}
    parts = [_title(part) for part in key.split(", ")]
    words = parts[0].lower().split()
    number = next((w for w in (words[0], words[-1]) if HOUSE_NUMBER.fullmatch(w)), None) if len(words) > 1 else None
    if number is not None:  # "12 Main St, Springfield" or "Hauptstraße 5, Berlin"
        street = " ".join(w for w in parts[0].split() if w.lower() != number)
        components = [_component(number, ["street_number"]), _component(street, ["route"])]
        kind, types, places = ("ROOFTOP" if len(parts) > 1 else "RANGE_INTERPOLATED"), ["street_address"], parts[1:]
    elif STREET_WORDS & set(words):  # a street without a number
        components, kind, types, places = [_component(parts[0], ["route"])], "GEOMETRIC_CENTER", ["route"], parts[1:]
    else:  # a town or region
        components, kind, types, places = [], "APPROXIMATE", None, parts
    ladder = [["sublocality", "political"]] * max(0, len(places) - 3) + list(LADDER[:len(places)])
    components += [_component(place, kinds) for place, kinds in zip(places, ladder)]
    digest = hashlib.sha256(key.encode()).digest()
    formatted = ", ".join(parts)
    if number is not None and places:
        postcode = str(10000 + int.from_bytes(digest[8:11], "big") % 90000)
        components.append(_component(postcode, ["postal_code"]))
        formatted += f" {postcode}"
    lat, lng = _point(", ".join(places).lower() or key)  # addresses in the same town lie close together
    if kind != "APPROXIMATE":
        lat, lng = lat + (digest[11] - 128) / 4000, lng + (digest[12] - 128) / 4000
    span = SPAN[kind]
    geometry = {"location": {"lat": round(lat, 7), "lng": round(lng, 7)}, "location_type": kind,
                "viewport": {"northeast": {"lat": round(lat + span, 7), "lng": round(lng + span, 7)},
                             "southwest": {"lat": round(lat - span, 7), "lng": round(lng - span, 7)}}}
    result = {"address_components": components, "formatted_address": formatted, "geometry": geometry,
              "place_id": "ChIJ" + base64.urlsafe_b64encode(digest[13:30]).decode()[:23],
              "types": types or ladder[0]}
    if kind != "ROOFTOP":
        result["partial_match"] = True
    return {"results": [result], "status": "OK"}


def routes(faults: ApiFaults) -> list[Route]:
    def answer_as(status: str, http_status: int = 200, message: str | None = None) -> Rejection:
        faults.counters[status] += 1
        return Rejection(http_status, {"error_message": message or MESSAGES[status], "results": [], "status": status})

    async def geocode_json(request: Request):
        address = request.query_params.get("address", "")
        api_key = request.query_params.get("key")
        key = normalise(address) or None

        def google_error(rejection: Rejection) -> Rejection:
            if rejection.status == 401:
                return answer_as("REQUEST_DENIED", message=None if api_key else MISSING_KEY)
            if rejection.status == 429:
                return answer_as("OVER_QUERY_LIMIT")
            return answer_as("UNKNOWN_ERROR", 200 if rejection.status == 500 else rejection.status)

        async def answer():
            if key is None:
                raise answer_as("INVALID_REQUEST", 400)
            body = geocode(key)
            faults.counters[body["status"]] += 1
            return 200, body

        return await guarded(faults, key, api_key, answer, on_rejection=google_error)

    return [Route("/maps/api/geocode/json", geocode_json)]
