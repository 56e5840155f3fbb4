"""The Geocoding and messaging emulators answer like the real APIs and count what clients do."""
import httpx
import pytest

ADDRESS = "1600 Amphitheatre Parkway, Mountain View, CA"


@pytest.fixture
def geocode(emulator):
    client = httpx.Client(base_url=emulator.url, timeout=10)

    def get(address=ADDRESS, key="geo-key", **params):
        params = {"address": address, "key": key, **params}
        return client.get("/maps/api/geocode/json", params={k: v for k, v in params.items() if v is not None})

    yield get
    client.close()


def test_geocoding_ok_shape_and_determinism(geocode):
    first = geocode()
    assert first.status_code == 200
    body = first.json()
    assert body["status"] == "OK" and "error_message" not in body
    result = body["results"][0]
    assert {"formatted_address", "geometry", "place_id", "types", "address_components"} <= set(result)
    assert result["formatted_address"].startswith("1600 Amphitheatre Parkway, Mountain View, CA")
    geometry = result["geometry"]
    assert geometry["location_type"] == "ROOFTOP" and "partial_match" not in result
    assert set(geometry["location"]) == {"lat", "lng"}
    assert set(geometry["viewport"]) == {"northeast", "southwest"}
    viewport = geometry["viewport"]
    assert viewport["southwest"]["lat"] < geometry["location"]["lat"] < viewport["northeast"]["lat"]
    assert result["types"] == ["street_address"] and result["place_id"].startswith("ChIJ")
    kinds = {kind for component in result["address_components"] for kind in component["types"]}
    assert {"street_number", "route", "locality", "postal_code"} <= kinds
    assert geocode("  1600 amphitheatre parkway,mountain view ,  ca ").json() == body  # normalised: same answer
    neighbour = geocode("1601 Amphitheatre Parkway, Mountain View, CA").json()["results"][0]
    assert neighbour["place_id"] != result["place_id"]
    assert abs(neighbour["geometry"]["location"]["lat"] - geometry["location"]["lat"]) < 0.1  # the same town


@pytest.mark.parametrize("address, location_type", [
    ("12 Main St", "RANGE_INTERPOLATED"),
    ("Main Street, Springfield", "GEOMETRIC_CENTER"),
    ("Springfield, IL", "APPROXIMATE"),
])
def test_vaguer_addresses_are_partial_matches(geocode, address, location_type):
    result = geocode(address).json()["results"][0]
    assert result["geometry"]["location_type"] == location_type
    assert result["partial_match"] is True


@pytest.mark.parametrize("address", ["asdfgh", "asd4n2gn", "12345", "12 Main St, Springfield, " * 300])
def test_gibberish_and_very_long_addresses_are_zero_results(geocode, address):
    answer = geocode(address)
    assert answer.status_code == 200 and answer.json() == {"results": [], "status": "ZERO_RESULTS"}


def test_geocoding_errors_come_as_google_statuses(emulator, geocode):
    missing = geocode(address=None)
    assert missing.status_code == 400 and missing.json()["status"] == "INVALID_REQUEST"
    assert "Missing the 'address'" in missing.json()["error_message"]
    emulator.configure("geocoding", api_key="geo-key")
    denied = geocode(key="wrong")
    assert denied.status_code == 200 and denied.json()["status"] == "REQUEST_DENIED"
    assert denied.json()["error_message"] == "The provided API key is invalid." and denied.json()["results"] == []
    assert "must use an API key" in geocode(key=None).json()["error_message"]
    emulator.configure("geocoding", rate_limit=2, rate_window=60)
    statuses = [geocode().json()["status"] for _ in range(3)]
    assert statuses == ["OK", "OK", "OVER_QUERY_LIMIT"]
    limited = geocode()
    assert limited.status_code == 200 and "retry-after" not in limited.headers
    assert limited.json()["error_message"] == "You have exceeded your rate-limit for this API."
    emulator.configure("geocoding", rate_limit=None, error_rate=1.0, error_statuses=[500])
    unknown = geocode()
    assert unknown.status_code == 200 and unknown.json() == {
        "error_message": "An unknown error occurred. Please try again.", "results": [], "status": "UNKNOWN_ERROR"}
    emulator.configure("geocoding", error_statuses=[503])
    assert geocode().status_code == 503
    stats = emulator.stats("geocoding")
    assert (stats["OK"], stats["OVER_QUERY_LIMIT"], stats["REQUEST_DENIED"], stats["UNKNOWN_ERROR"]) == (2, 2, 2, 2)
    assert stats["INVALID_REQUEST"] == 1 and stats["statuses"] == {"200": 7, "400": 1, "503": 1}
    key = "1600 amphitheatre parkway, mountain view, ca"
    assert stats["repeated_keys"][key] == 8 and stats["ok_keys"] == 1 and stats["ok_repeated_keys"] == {key: 2}


MESSAGE = {"to": "+15555550123", "channel": "sms", "body": "Your book is ready.", "metadata": {"request": "r1"}}


@pytest.fixture
def messages(emulator):
    client = httpx.Client(base_url=f"{emulator.url}/messaging", timeout=10)

    def send(body=MESSAGE, key="k1", bearer="msg-key"):
        headers = {"Authorization": f"Bearer {bearer}", **({"Idempotency-Key": key} if key else {})}
        return client.post("/v1/messages", json=body, headers=headers)

    def lookup(key):
        return client.get("/v1/messages", params={"idempotency_key": key}, headers={"Authorization": "Bearer msg-key"})

    send.lookup = lookup
    yield send
    client.close()


def test_idempotent_send_replays_without_delivering_twice(emulator, messages):
    first = messages()
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    sent = first.json()
    assert sent["id"].startswith("msg_") and sent["status"] == "queued"
    assert (sent["to"], sent["channel"]) == (MESSAGE["to"], "sms") and sent["created_at"].endswith("Z")
    replay = messages(dict(reversed(list(MESSAGE.items()))))  # the same body, keys in another order
    assert replay.status_code == 200 and replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == sent
    reused = messages({**MESSAGE, "body": "Something else."})
    assert reused.status_code == 422 and reused.json()["error"]["code"] == "idempotency_key_reused"
    assert messages(key="k2").status_code == 201
    found, unknown = messages.lookup("k1"), messages.lookup("never-sent")
    assert found.status_code == 200 and found.json() == sent
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found_error"
    stats = emulator.stats("messaging")
    assert (stats["delivered"], stats["duplicates"], stats["conflicts"], stats["lookups"]) == (2, 1, 1, 2)
    assert stats["repeated_keys"] == {"k1": 3} and stats["ok_repeated_keys"] == {"k1": 2}


def test_messaging_validation_and_auth(emulator, messages):
    missing = messages(key=None)
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "idempotency_key_missing"
    bad_phone = messages({**MESSAGE, "to": "555-0123"})
    assert bad_phone.status_code == 422 and bad_phone.json()["error"]["param"] == "to"
    assert messages({**MESSAGE, "body": "  "}).json()["error"]["param"] == "body"
    assert messages({**MESSAGE, "channel": "email", "to": "reader@example.org"}, key="k3").status_code == 201
    emulator.configure("messaging", api_key="msg-key")
    denied = messages(bearer="wrong", key="k4")
    assert denied.status_code == 401 and denied.json()["error"]["type"] == "authentication_error"
    assert messages(key="k4").status_code == 201  # a rejected key is not used up
    assert emulator.stats("messaging")["delivered"] == 2


def test_injected_faults_before_processing_do_not_deliver(emulator, messages):
    emulator.configure("messaging", error_rate=1.0, error_statuses=[503])
    assert messages().status_code == 503
    emulator.configure("messaging", error_rate=0.0, rate_limit=1, rate_window=60)
    assert messages(key="k2").status_code == 201
    throttled = messages()
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1
    assert messages.lookup("k1").status_code == 429  # lookups share the limit
    emulator.configure("messaging", rate_limit=None)
    assert messages.lookup("k1").status_code == 404
    assert emulator.stats("messaging")["delivered"] == 1


def test_lost_answers_deliver_but_the_client_sees_an_error(emulator, messages):
    emulator.configure("messaging", lose_answer_rate=1.0, error_statuses=[500])
    lost = messages()
    assert lost.status_code == 500
    emulator.configure("messaging", error_statuses=[504], hang_seconds=30)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{emulator.url}/messaging/v1/messages", json=MESSAGE, timeout=0.5,
                   headers={"Authorization": "Bearer b", "Idempotency-Key": "k2"})
    emulator.configure("messaging", lose_answer_rate=0.0)
    delivered = messages.lookup("k1")
    assert delivered.status_code == 200 and delivered.json()["status"] == "queued"
    assert messages.lookup("k2").status_code == 200
    retry = messages()
    assert retry.status_code == 200 and retry.headers["idempotent-replayed"] == "true"
    assert retry.json() == delivered.json()
    stats = emulator.stats("messaging")
    assert (stats["delivered"], stats["lost_answers"], stats["duplicates"]) == (2, 2, 1)
