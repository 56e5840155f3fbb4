"""Shared async HTTP client: pooled connections, rate limit, retries with backoff and Retry-After.

One `ApiClient` per chunk execution: an `httpx.AsyncClient` on the aiohttp transport (httpx's own
transport collapses at high concurrency), the shared `RateLimiter`, and a retry loop that turns
every outcome into a response, a `RowError` (the row fails, the batch goes on) or a `FatalError`
(nothing will work: wrong key, so the run stops).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import httpx
from httpx_aiohttp import AiohttpTransport

from tasks.engine.job import Limiter, Limits
from tasks.engine.outcomes import CallStats, FatalError, RowError
from tasks.engine.secrets import Secret

RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504, 529}
FATAL_STATUSES = {401, 403}


@dataclass
class RetryPolicy:
    max_attempts: int = 6  # for 5xx, timeouts and connection errors
    max_throttled: int = 30  # 429s tolerated for one row before it fails (retryable)
    backoff_base: float = 0.5
    backoff_cap: float = 30.0

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter."""
        return random.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)))


def _seconds(text: str) -> float | None:
    """'6s', '1m30s', '120ms', '0.5' or an RFC 3339 time (anthropic-ratelimit-*-reset) -> seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?", text)
    if parts and any(parts.groups()):
        h, m, s, ms = (float(g or 0) for g in parts.groups())
        return h * 3600 + m * 60 + s + ms / 1000
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() - time.time()
    except ValueError:
        return None


def quota_reset_seconds(headers) -> float | None:
    """When a quota the answer reports as used up (remaining 0) resets: the `x-ratelimit-*` headers
    of OpenAI-compatible APIs and `anthropic-ratelimit-*`; None when no quota is exhausted."""
    waits = []
    for kind in ("requests", "tokens", "input-tokens", "output-tokens"):
        for remaining, reset in ((f"x-ratelimit-remaining-{kind}", f"x-ratelimit-reset-{kind}"),
                                 (f"anthropic-ratelimit-{kind}-remaining", f"anthropic-ratelimit-{kind}-reset")):
            if headers.get(remaining, "").strip() == "0" and headers.get(reset):
                seconds = _seconds(headers[reset])
                if seconds is not None:
                    waits.append(max(0.0, seconds))
    return max(waits) if waits else None


def retry_after_seconds(response) -> float | None:
    """Seconds from `retry-after-ms`, `Retry-After` (seconds or an HTTP date), else the reset time of
    an exhausted `x-ratelimit-*` quota."""
    if (ms := response.headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if value is None:
        return quota_reset_seconds(response.headers)
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def error_text(response, limit: int = 300, status: int | None = None) -> str:
    """A short, key-free description of an error answer: status plus the API's own message."""
    try:
        body = response.json()
    except ValueError:
        body = response.text.strip()
    detail: Any = body
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("error") or body.get("message") or body.get("error_message") or body
        if isinstance(detail, dict):
            detail = detail.get("message") or detail
    if isinstance(detail, list):  # pydantic-style validation errors
        detail = "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc', [])[1:]) or 'body'}: {item.get('msg')}"
            if isinstance(item, dict) else str(item) for item in detail
        )
    return f"HTTP {status or response.status_code}: {str(detail)[:limit]}"


class ErrorAnswer(Exception):
    """Raised by a `send` function (e.g. around an SDK call) to hand an HTTP error answer to the
    retry loop: anything with `status_code`, `headers`, `json()` and `text`."""

    def __init__(self, response):
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


@dataclass(frozen=True)
class Attempt:
    """One try's outcome: a `result`, or a `problem` (with the HTTP `status` of the answer that
    caused it, if any, and the seconds the API asked to wait)."""

    result: Any = None
    problem: str = ""
    status: int | None = None
    wait: float | None = None


class ApiClient:
    """`async with ApiClient(...) as api: response = await api.request("POST", "/v1/x", json=...)`.

    `call(send, tokens)` runs any coroutine function (an SDK call) under the same limits and retries.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        timeout: float = 30.0,
        concurrency: int = 50,
        limiter: Limiter | None = None,
        token_limiter: Limiter | None = None,
        retry: RetryPolicy | None = None,
        status_of: Callable[[Any], int] | None = None,
    ):
        self.base_url, self.headers, self.params, self.timeout = base_url, headers or {}, params or {}, timeout
        self.status_of = status_of  # for APIs that put the outcome in the body (Google: HTTP 200 + "status")
        self.concurrency, self.limiter, self.token_limiter = concurrency, limiter, token_limiter
        self.retry = retry or RetryPolicy()
        self.stats = CallStats()
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> "ApiClient":
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        self._client = httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers, params=self.params, timeout=self.timeout,
            transport=AiohttpTransport(limits=limits),
        )
        return self

    async def __aexit__(self, *exc) -> None:
        await self._client.aclose()

    @property
    def limiters(self) -> list[Limiter]:
        return [limiter for limiter in (self.limiter, self.token_limiter) if limiter is not None]

    def close(self) -> None:
        """Release the shared limiter files (after `__aexit__`)."""
        for limiter in self.limiters:
            limiter.close()

    async def request(self, method: str, url: str, tokens: int = 0, **kwargs: Any) -> httpx.Response:
        """Send with retries; returns a 2xx/3xx response or raises RowError / FatalError."""
        return await self.call(lambda: self._client.request(method, url, **kwargs), tokens)

    async def call(self, send: Callable[[], Awaitable[Any]], tokens: int = 0) -> Any:
        """Run `send()` with the rate limits (`tokens`: its estimated cost against a tokens/min
        limit) and retries; returns its result or raises RowError / FatalError."""
        attempts = throttled = 0
        while True:
            if self.limiter is not None:
                await self.limiter.acquire()
            if self.token_limiter is not None and tokens:
                await self.token_limiter.acquire(tokens)
            self.stats.requests += 1
            attempt = await self._attempt(send)
            if not attempt.problem:
                return attempt.result
            throttled += attempt.status == 429
            attempts += attempt.status != 429
            if attempts >= self.retry.max_attempts or throttled > self.retry.max_throttled:
                raise RowError(f"gave up after {attempts + throttled} attempts: {attempt.problem}", retryable=True,
                               status=attempt.status)
            self.stats.retries += 1
            wait = attempt.wait if attempt.wait is not None else self.retry.backoff(attempts + throttled)
            await asyncio.sleep(wait)

    def pause_all(self, seconds: float) -> None:
        for limiter in self.limiters:
            limiter.pause(seconds)

    async def _attempt(self, send) -> Attempt:
        """One try: its result, or the problem to retry (raises for answers not worth retrying)."""
        try:
            async with asyncio.timeout(self.timeout):
                result = await send()
        except ErrorAnswer as error:
            result = error.response
        except (TimeoutError, httpx.TimeoutException):
            self.stats.timeouts += 1
            return Attempt(problem=f"timed out after {self.timeout:g} s")
        except (httpx.TransportError, ConnectionError) as error:
            self.stats.connection_errors += 1
            return Attempt(problem=f"connection error: {type(error).__name__}: {error}"[:300])
        status = self.status_of(result) if self.status_of else getattr(result, "status_code", 200)
        if status < 400:
            return Attempt(result=result)
        if status in FATAL_STATUSES:
            raise FatalError(f"{error_text(result, status=status)} from {self.base_url}: check the API key and its permissions")
        if status not in RETRY_STATUSES:
            raise RowError(error_text(result, status=status), status=status)
        wait = retry_after_seconds(result)
        if status == 429:
            self.stats.throttled += 1
            if wait is not None:
                self.pause_all(wait)
        else:
            self.stats.server_errors += status >= 500
        if wait is not None:
            wait += random.uniform(0, 0.1 * wait + 0.05)  # de-synchronise the herd
        return Attempt(problem=error_text(result, status=status), status=status, wait=wait)


@dataclass(frozen=True)
class ApiSpec:
    """How to reach one API: base URL, headers (secret ones hidden), timeout, shared rate limit."""

    name: str
    base_url: str
    timeout: float = 30.0
    rate_per_second: float | None = None
    tokens_per_second: float | None = None  # LLM APIs: each call is charged its estimated tokens
    max_call_tokens: int = 1000  # the most one call may cost: the token limiter keeps that much spare
    rate_window: float = 1.0  # the window the provider counts in: 60 for per-minute limits
    limit_id: str = ""  # what shares one budget (default: the base URL)
    headers: dict[str, str] = field(default_factory=dict)
    secret_headers: dict[str, Secret] = field(default_factory=dict)
    secret_params: dict[str, Secret] = field(default_factory=dict)  # keys sent in the query (Google's `key`)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    status_of: Callable[[Any], int] | None = None  # the effective status of an answer (module-level function)

    @property
    def fingerprint(self) -> str:
        return self.limit_id or self.base_url

    @property
    def row_rate_limit(self) -> float | None:
        """The most rows per second its request limit lets through (one request per row)."""
        return self.rate_per_second

    def limiter(self, limits: Limits, per_second: float | None, kind: str = "", burst: float = 1) -> Limiter | None:
        if not per_second:
            return None
        return limits.limiter((self.limit_id or self.base_url) + kind, per_second, window=self.rate_window, burst=burst)

    def client(self, concurrency: int, limits: Limits) -> ApiClient:
        headers = {**self.headers, **{k: v.reveal() for k, v in self.secret_headers.items()}}
        params = {k: v.reveal() for k, v in self.secret_params.items()}
        return ApiClient(self.base_url, headers=headers, params=params, timeout=self.timeout, concurrency=concurrency,
                         limiter=self.limiter(limits, self.rate_per_second),
                         token_limiter=self.limiter(limits, self.tokens_per_second, "#tokens", self.max_call_tokens),
                         retry=self.retry, status_of=self.status_of)
