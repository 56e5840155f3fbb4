"""LLM helpers: prices, prompt templates, rate-limit headers."""
import httpx
import pytest

from tasks.apis.http import retry_after_seconds
from tasks.apis.llm import Price, PromptTemplate, load_prices, price_for


def test_prices_match_dated_snapshots_and_files_override(tmp_path):
    table = load_prices(None)
    assert price_for("claude-haiku-4-5-20251001", table) == table["claude-haiku-4-5"]
    assert price_for("my-local-model", table) is None
    path = tmp_path / "prices.yaml"
    path.write_text("my-local-model: {input: 0.2, output: 0.4}\n")
    price = price_for("my-local-model", load_prices(path))
    assert price.cost(1_000_000, 500_000) == pytest.approx(0.4)
    assert Price(2, 10).cost(0, 0, cache_write=1_000_000, cache_read=1_000_000) == pytest.approx(2.5 + 0.2)
    path.write_text("broken: {input: 1}\n")
    with pytest.raises(ValueError, match="price of 'broken'"):
        load_prices(path)


def test_prompt_templates_name_unknown_and_empty_placeholders():
    template = PromptTemplate("Hi {first_name} at {company}, {{literal}}", "p.txt")
    assert template.render({"first_name": "Ana", "company": float("nan")}) == "Hi Ana at , {literal}"
    with pytest.raises(ValueError, match=r"p.txt: placeholder\(s\) \{company\} not found in the file"):
        template.check(["first_name"], "the file")
    with pytest.raises(ValueError, match="empty placeholder"):
        PromptTemplate("Hi {}", "q.txt").check(["a"], "x")
    with pytest.raises(ValueError, match="not a valid template"):
        PromptTemplate("Hi {name", "r.txt")


@pytest.mark.parametrize("headers, seconds", [
    ({"retry-after": "3"}, 3.0),
    ({"retry-after-ms": "250"}, 0.25),
    ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m30s",
      "x-ratelimit-remaining-tokens": "100", "x-ratelimit-reset-tokens": "5s"}, 90.0),
    ({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "120ms"}, 0.12),
    ({"x-ratelimit-remaining-tokens": "5", "x-ratelimit-reset-tokens": "7s"}, None),
])
def test_retry_waits_come_from_retry_after_or_exhausted_quota_headers(headers, seconds):
    assert retry_after_seconds(httpx.Response(429, headers=headers)) == seconds
