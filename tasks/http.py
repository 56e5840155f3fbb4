"""Shared async HTTP client: pooled connections, rate limit, retries with backoff and Retry-After.

One `ApiClient` per chunk execution: an `httpx.AsyncClient` on the aiohttp transport (httpx's own
transport collapses at high concurrency), the shared `RateLimiter`, and a retry loop that turns
every outcome into a response, a `RowError` (the row fails, the batch goes on) or a `FatalError`
(nothing will work: wrong key, so the run stops).
"""
from __future__ import annotations

import asyncio
import email.utils
import random
import time
from dataclasses import dataclass, fields
from typing import Any

import httpx
from httpx_aiohttp import AiohttpTransport

from tasks.ratelimit import RateLimiter

RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504, 529}
FATAL_STATUSES = {401, 403}


class RowError(Exception):
    """This row failed; `retryable` rows are tried again in the follow-up pass and on rerun.

    `bad_input` marks a problem with the row's own data: the message gets the file and row prefixed.
    """

    def __init__(self, message: str, retryable: bool = False, bad_input: bool = False):
        super().__init__(message)
        self.retryable, self.bad_input = retryable, bad_input


class FatalError(Exception):
    """No row can succeed (e.g. the API rejects the key): stop the run with this message."""


@dataclass
class RetryPolicy:
    max_attempts: int = 6  # for 5xx, timeouts and connection errors
    max_throttled: int = 30  # 429s tolerated for one row before it fails (retryable)
    backoff_base: float = 0.5
    backoff_cap: float = 30.0

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter."""
        return random.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)))


@dataclass
class CallStats:
    requests: int = 0
    retries: int = 0
    throttled: int = 0  # 429 answers
    server_errors: int = 0  # 5xx answers
    timeouts: int = 0
    connection_errors: int = 0

    def add(self, other: "CallStats | dict[str, int]") -> None:
        values = other if isinstance(other, dict) else other.__dict__
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + values.get(f.name, 0))


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Seconds from `retry-after-ms`, or `Retry-After` as seconds or an HTTP date."""
    if (ms := response.headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def error_text(response: httpx.Response, limit: int = 300) -> str:
    """A short, key-free description of an error answer: status plus the API's own message."""
    try:
        body = response.json()
    except ValueError:
        body = response.text.strip()
    detail: Any = body
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("error") or body.get("message") or body
        if isinstance(detail, dict):
            detail = detail.get("message") or detail
    if isinstance(detail, list):  # pydantic-style validation errors
        detail = "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc', [])[1:]) or 'body'}: {item.get('msg')}"
            if isinstance(item, dict) else str(item) for item in detail
        )
    return f"HTTP {response.status_code}: {str(detail)[:limit]}"


class ApiClient:
    """`async with ApiClient(...) as api: response = await api.request("POST", "/v1/x", json=...)`."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
        concurrency: int = 50,
        limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
    ):
        self.base_url, self.headers, self.timeout = base_url, headers or {}, timeout
        self.concurrency, self.limiter = concurrency, limiter
        self.retry = retry or RetryPolicy()
        self.stats = CallStats()
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> "ApiClient":
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        self._client = httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers, timeout=self.timeout,
            transport=AiohttpTransport(limits=limits),
        )
        return self

    async def __aexit__(self, *exc) -> None:
        await self._client.aclose()

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send with retries; returns a 2xx/3xx response or raises RowError / FatalError."""
        attempts = throttled = 0
        while True:
            if self.limiter is not None:
                await self.limiter.acquire()
            self.stats.requests += 1
            problem, wait = await self._attempt(method, url, kwargs)
            if isinstance(problem, httpx.Response):
                return problem
            is_429 = problem.startswith("HTTP 429")
            throttled += is_429
            attempts += not is_429
            if attempts >= self.retry.max_attempts or throttled > self.retry.max_throttled:
                tries = attempts + throttled
                raise RowError(f"gave up after {tries} attempts: {problem}", retryable=True)
            self.stats.retries += 1
            await asyncio.sleep(wait if wait is not None else self.retry.backoff(attempts + throttled))

    async def _attempt(self, method: str, url: str, kwargs: dict) -> tuple[httpx.Response | str, float | None]:
        """One try: (response, None) when done, or (problem text, seconds to wait or None)."""
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._client.request(method, url, **kwargs)
        except (TimeoutError, httpx.TimeoutException):
            self.stats.timeouts += 1
            return f"timed out after {self.timeout:g} s", None
        except httpx.TransportError as error:
            self.stats.connection_errors += 1
            return f"connection error: {type(error).__name__}: {error}"[:300], None
        status = response.status_code
        if status < 400:
            return response, None
        if status in FATAL_STATUSES:
            raise FatalError(f"{error_text(response)} from {self.base_url}: check the API key and its permissions")
        if status not in RETRY_STATUSES:
            raise RowError(error_text(response))
        wait = retry_after_seconds(response)
        if status == 429:
            self.stats.throttled += 1
            if wait is not None and self.limiter is not None:
                self.limiter.pause(wait)
        else:
            self.stats.server_errors += status >= 500
        if wait is not None:
            wait += random.uniform(0, 0.1 * wait + 0.05)  # de-synchronise the herd
        return error_text(response), wait
