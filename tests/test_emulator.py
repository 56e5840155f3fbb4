"""The card-recommendation emulator keeps the API's contract and counts what clients really do."""
import time

import httpx
import pytest

from conftest import API_KEY

PROFILE = {"user_id": "u1", "monthly_spend": 1200.5, "top_category": "dining", "credit_score": 710, "city": "Austin"}


@pytest.fixture
def post(emulator):
    client = httpx.Client(base_url=emulator.url, timeout=10)

    def send(body, key=API_KEY):
        return client.post("/v1/recommendations", json=body, headers={"X-API-Key": key})

    yield send
    client.close()


def test_recommendations_are_deterministic_and_shaped_like_the_contract(post):
    first, second = post(PROFILE), post(dict(reversed(list(PROFILE.items()))))
    assert first.status_code == 200
    assert first.json() == second.json()
    body = first.json()
    assert body["user_id"] == "u1"
    assert body["recommendations"][0]["card_name"] == "Dine Out Rewards"
    for card in body["recommendations"]:
        assert set(card) == {"card_name", "issuer", "annual_savings", "reason"}
        assert isinstance(card["annual_savings"], float)
    assert post({**PROFILE, "monthly_spend": 99.0}).json() != body


def test_wrong_key_is_401_and_invalid_body_is_422(post):
    assert post(PROFILE, key="nope").status_code == 401
    missing = post({"monthly_spend": 10})
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["body", "user_id"]
    text = post({**PROFILE, "monthly_spend": "lots"})
    assert text.status_code == 422 and text.json()["detail"][0]["loc"] == ["body", "monthly_spend"]


def test_rate_limit_answers_429_with_retry_after_and_accounting_counts_everything(emulator, post):
    emulator.configure("cards", rate_limit=5, rate_window=1.0)
    statuses = [post({**PROFILE, "user_id": f"u{i}"}).status_code for i in range(8)]
    assert statuses == [200] * 5 + [429] * 3
    throttled = post(PROFILE)
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1
    stats = emulator.stats("cards")
    assert stats["total"] == 9
    assert stats["statuses"] == {"200": 5, "429": 4}
    assert stats["max_1s"] == 9
    assert stats["ok_keys"] == 5
    assert stats["repeated_keys"] == {"u1": 2}


def test_injected_errors_hangs_latency_and_storms(emulator, post):
    emulator.configure("cards", error_rate=1.0, error_statuses=[503])
    assert post(PROFILE).status_code == 503
    emulator.configure("cards", error_rate=0.0, latency=0.3)
    started = time.monotonic()
    assert post(PROFILE).status_code == 200
    assert time.monotonic() - started >= 0.3
    emulator.configure("cards", latency=0.0, hang_rate=1.0, hang_seconds=30)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{emulator.url}/v1/recommendations", json=PROFILE, headers={"X-API-Key": API_KEY}, timeout=0.5)
    emulator.configure("cards", hang_rate=0.0, storm_period=1000, storm_duration=1000)
    storm = post(PROFILE)
    assert storm.status_code == 429 and storm.headers["Retry-After"] == "1"
    assert emulator.stats("cards")["hangs"] == 1


def test_unknown_setting_is_refused(emulator):
    with pytest.raises(httpx.HTTPStatusError):
        emulator.configure("cards", latncy=1)
