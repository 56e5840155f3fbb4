"""ApiClient against the emulators on loopback (no Prefect): redirects followed only where safe, attempt
counts equal to what the server received, and URLs that cannot work stopping the run at once."""
import asyncio
import socket

import pytest
from conftest import API_KEY

from emulators import Emulator
from tasks.apis.http import ApiClient, RetryPolicy
from tasks.engine.outcomes import FIRST_CALLS, FatalError, GaveUp, RowError

QUICK = RetryPolicy(max_attempts=4, backoff_base=0.01)


def send(base_url: str, method: str, path: str, first_calls: bool = False, **kwargs):
    """One `ApiClient.request` in a fresh client, as a chunk makes it (first_calls: before any row succeeded)."""

    async def run():
        FIRST_CALLS.set(first_calls)
        async with ApiClient(base_url, name="test", retry=QUICK, timeout=10,
                             headers={"X-API-Key": API_KEY}) as api:
            return await api.request(method, path, **kwargs)

    return asyncio.run(run())


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_get_follows_a_redirect_to_the_same_host(emulator):
    emulator.configure("geocoding", moved_to="/_emulator/health", moved_status=302)
    response = send(emulator.url, "GET", "/maps/api/geocode/json", params={"address": "1 Main St"})
    assert response.status_code == 200 and response.json()["ok"] is True
    assert emulator.stats("geocoding")["total"] == 1


def test_307_keeps_the_method_and_the_body(emulator):
    emulator.configure("cards", moved_to=f"{emulator.url}/search", moved_status=307)
    response = send(emulator.url, "POST", "/v1/recommendations", json={"q": "acme logistics"})
    assert response.json()["searchParameters"]["q"] == "acme logistics"  # the search API got the POST and its body
    assert emulator.stats("cards")["total"] == 1 and emulator.stats("serper")["total"] == 1


@pytest.mark.parametrize("status, advice", [(301, "the API moved; update the base URL"),
                                            (302, "not followed for POST to this host; check the base URL")])
def test_a_post_is_never_turned_into_a_get(emulator, status, advice):
    emulator.configure("cards", moved_to=f"{emulator.url}/search", moved_status=status)
    with pytest.raises(RowError) as raised:
        send(emulator.url, "POST", "/v1/recommendations", json={"q": "acme"})
    assert str(raised.value) == f"HTTP {status} to {emulator.url}/search: {advice}"
    assert raised.value.status == status and not raised.value.retryable
    assert emulator.stats("serper")["total"] == 0


def test_a_redirect_to_another_host_is_not_followed_and_the_key_goes_nowhere(emulator):
    port = emulator.url.rsplit(":", 1)[1]
    elsewhere = f"http://localhost:{port}/messaging/v1/messages"  # the same server under another host name
    emulator.configure("geocoding", moved_to=f"{elsewhere}?idempotency_key=k1&key={API_KEY}")
    with pytest.raises(RowError) as raised:
        send(emulator.url, "GET", "/maps/api/geocode/json", params={"address": "1 Main St"})
    assert str(raised.value) == f"HTTP 301 to {elsewhere}: the API moved; update the base URL"  # no query shown
    assert emulator.stats("messaging")["total"] == 0


def test_a_redirect_loop_ends_after_five_redirects(emulator):
    emulator.configure("geocoding", moved_to="/maps/api/geocode/json?address=again", moved_status=307)
    with pytest.raises(RowError) as raised:
        send(emulator.url, "GET", "/maps/api/geocode/json", params={"address": "1 Main St"})
    assert str(raised.value) == (f"HTTP 307 to {emulator.url}/maps/api/geocode/json: more than 5 redirects; "
                                 f"check the base URL")
    assert emulator.stats("geocoding")["total"] == 6


@pytest.mark.parametrize("method, api, path", [("POST", "cards", "/v1/recommendations"),
                                               ("GET", "geocoding", "/maps/api/geocode/json")])
def test_the_attempts_a_message_counts_are_the_requests_the_server_received(emulator, method, api, path):
    emulator.configure(api, cut_rate=1.0)  # every answer stops in the middle: the connection closes
    with pytest.raises(GaveUp) as raised:
        send(emulator.url, method, path, json={"user_id": "u1"} if method == "POST" else None)
    assert str(raised.value).startswith("gave up after 4 attempts: connection error: ClientPayloadError: ")
    assert emulator.stats(api)["total"] == raised.value.attempts == 4


@pytest.mark.parametrize("base_url", ["127.0.0.1:8000", "ftp://127.0.0.1:8000"])
def test_a_url_without_a_usable_scheme_is_fatal_at_once(base_url):
    with pytest.raises(FatalError) as raised:
        send(base_url, "POST", "/v1/recommendations", json={})
    assert str(raised.value).startswith(f"the test API's URL {base_url!r} cannot be used (")
    assert str(raised.value).endswith("): it needs http:// or https:// and a host")


@pytest.mark.parametrize("base_url, problem", [(f"http://127.0.0.1:{closed_port()}", "connection refused"),
                                               ("http://no-such-host.invalid", "host name not resolved (")])
def test_an_api_unreachable_on_the_first_calls_is_fatal_later_it_is_retried(base_url, problem):
    with pytest.raises(FatalError) as raised:
        send(base_url, "GET", "/x", first_calls=True)
    assert str(raised.value).startswith(f"the test API at {base_url} cannot be reached ({problem}")
    assert str(raised.value).endswith("on the first calls of the run: check the URL and that the server is up")
    with pytest.raises(GaveUp) as raised:  # rows of the run succeeded already: a server restarting, say
        send(base_url, "GET", "/x", first_calls=False)
    assert str(raised.value).startswith(f"gave up after 4 attempts: connection error: {problem}")


def test_a_connection_refused_after_the_api_answered_is_retried():
    server = Emulator().start()

    async def run():
        FIRST_CALLS.set(True)
        async with ApiClient(server.url, name="test", retry=QUICK) as api:
            assert (await api.request("GET", "/_emulator/health")).status_code == 200
            server.stop()
            await api.request("GET", "/_emulator/health")

    try:
        with pytest.raises(GaveUp) as raised:
            asyncio.run(run())
    finally:
        server.stop()
    assert str(raised.value) == "gave up after 4 attempts: connection error: connection refused"
