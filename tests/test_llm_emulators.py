"""The Serper, chat-completions and Anthropic emulators answer like the real APIs, through real clients."""
import anthropic
import httpx
import pytest


def test_serper_search_is_deterministic_and_counts_queries(emulator):
    body = {"q": "Acme Logistics acme.io"}
    first = httpx.post(f"{emulator.url}/search", json=body, headers={"X-API-KEY": "k"})
    assert first.status_code == 200
    results = first.json()
    assert results == httpx.post(f"{emulator.url}/search", json=body, headers={"X-API-KEY": "k"}).json()
    assert results["searchParameters"]["q"] == body["q"]
    assert all({"title", "link", "snippet", "position"} <= set(hit) for hit in results["organic"])
    assert results["organic"][0]["link"].startswith("https://acme.io/")
    assert httpx.post(f"{emulator.url}/search", json={}).status_code == 400
    emulator.configure("serper", api_key="right")
    denied = httpx.post(f"{emulator.url}/search", json=body, headers={"X-API-KEY": "wrong"})
    assert denied.status_code == 401 and denied.json() == {"message": "Unauthorized.", "statusCode": 401}
    stats = emulator.stats("serper")
    assert stats["total"] == 4 and stats["repeated_keys"] == {body["q"]: 3}


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/openai/v1/chat/completions"])
def test_chat_completions_shape_usage_and_headers(emulator, path):
    emulator.configure("chat", rate_limit=100, token_limit=10_000, rate_window=60)
    answer = httpx.post(f"{emulator.url}{path}", headers={"Authorization": "Bearer k"}, json={
        "model": "llama-3.3-70b", "max_tokens": 60,
        "messages": [{"role": "user", "content": "Write one line to Dana at Northwind Traders."}]})
    assert answer.status_code == 200
    body = answer.json()
    assert body["object"] == "chat.completion" and body["choices"][0]["finish_reason"] == "stop"
    assert "Northwind Traders" in body["choices"][0]["message"]["content"]
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert answer.headers["x-ratelimit-limit-requests"] == "100"
    assert int(answer.headers["x-ratelimit-remaining-tokens"]) <= 10_000


def test_chat_token_limit_context_length_and_empty_completions(emulator):
    url = f"{emulator.url}/openai/v1/chat/completions"
    emulator.configure("chat", token_limit=300, rate_window=60)
    message = {"model": "m", "max_tokens": 200, "messages": [{"role": "user", "content": "hello"}]}
    assert httpx.post(url, json=message).status_code == 200
    throttled = httpx.post(url, json=message)
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1
    assert throttled.json()["error"]["type"] == "rate_limit_exceeded"
    emulator.configure("chat", token_limit=None, empty_rate=1.0)
    assert httpx.post(url, json=message).json()["choices"][0]["message"]["content"] == ""
    too_long = httpx.post(url, json={**message, "messages": [{"role": "user", "content": "x" * 600_000}]})
    assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "context_length_exceeded"
    assert emulator.stats("chat")["max_tokens_60s"] >= 400
    assert httpx.post(url, json=[message]).status_code == 400  # a JSON list is a bad request, not a crash


def test_anthropic_sdk_talks_to_the_emulator(emulator):
    emulator.configure("anthropic", api_key="sk-ant-test")
    client = anthropic.Anthropic(api_key="sk-ant-test", base_url=emulator.url, max_retries=0)
    message = client.messages.create(model="claude-sonnet-5", max_tokens=100, system="You write emails.",
                                     messages=[{"role": "user", "content": "One line for Ines at Contoso Pharma."}])
    assert message.stop_reason == "end_turn" and "Contoso Pharma" in message.content[0].text
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(api_key="wrong", base_url=emulator.url, max_retries=0).messages.create(
            model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.BadRequestError, match="prompt is too long"):
        client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "x" * 900_000}])
    emulator.configure("anthropic", storm_period=100, storm_duration=100, retry_after=3)
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert limited.value.response.headers["retry-after"] == "3"
    assert limited.value.body["error"]["type"] == "rate_limit_error"
    emulator.configure("anthropic", storm_period=0, error_rate=1.0, error_statuses=[529])
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert overloaded.value.status_code == 529 and overloaded.value.body["error"]["type"] == "overloaded_error"
