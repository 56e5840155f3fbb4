"""Shared async HTTP client: pooled connections, rate limit, retries with backoff and Retry-After.

One `ApiClient` per chunk execution: an `httpx.AsyncClient` on the aiohttp transport (httpx's own
transport collapses at high concurrency), the shared `RateLimiter`, and a retry loop that turns
every outcome into a response, a `RowError` (the row fails, the batch goes on) or a `FatalError`
(nothing will work: wrong key, a URL without scheme, an API unreachable from the start, so the
run stops). Redirects are followed only where that is safe (see `ApiClient.request`).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import enum
import random
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from tasks.engine.job import Limiter, Limits
from tasks.engine.outcomes import FIRST_CALLS, CallStats, FatalError, GaveUp, RowError
from tasks.engine.secrets import Secret

RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504, 529}
FATAL_STATUSES = {401, 403}
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
PERMANENT_REDIRECTS = {301, 308}
MAX_REDIRECTS = 5


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


def _chain(error: BaseException) -> list[BaseException]:
    """The error and what caused it, outermost first."""
    chain: list[BaseException] = []
    while error is not None and all(error is not seen for seen in chain):
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


class NoAnswer(enum.Enum):
    """Why a request got no answer."""

    URL = "the URL can never work"
    UNREACHABLE = "connection refused, unknown host"
    TIMEOUT = "timed out"
    CONNECTION = "closed, reset ..."


@dataclass(frozen=True)
class TransportFailure:
    kind: NoAnswer
    text: str

    @classmethod
    def of(cls, error: BaseException) -> "TransportFailure":
        chain = _chain(error)

        def found(kind):
            return next((e for e in chain if isinstance(e, kind)), None)

        if found((httpx.UnsupportedProtocol, httpx.InvalidURL, aiohttp.InvalidURL)):
            return cls(NoAnswer.URL, str(error))
        if found(ConnectionRefusedError):
            return cls(NoAnswer.UNREACHABLE, "connection refused")
        if (unknown := found(socket.gaierror)) is not None:
            return cls(NoAnswer.UNREACHABLE, f"host name not resolved ({unknown.strerror or unknown})")
        # httpx-aiohttp maps aiohttp's connection errors to timeouts: a real one has no other aiohttp error
        mislabelled = any(isinstance(e, aiohttp.ClientError) and not isinstance(e, TimeoutError) for e in chain)
        if isinstance(error, TimeoutError) or (isinstance(error, httpx.TimeoutException) and not mislabelled):
            return cls(NoAnswer.TIMEOUT, "")
        cause = next((e for e in chain if not isinstance(e, httpx.HTTPError)), error)
        return cls(NoAnswer.CONNECTION, f"connection error: {type(cause).__name__}: {cause}"[:300])


def _shown(url: httpx.URL) -> str:
    """A URL for a message: without its query (it may carry a key)."""
    return str(url.copy_with(query=None, fragment=None))


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
        name: str = "",
    ):
        self.base_url, self.headers, self.params, self.timeout = base_url, headers or {}, params or {}, timeout
        self.name = name or base_url
        self.first_calls = FIRST_CALLS.get()  # sent before the run saw a row succeed (tasks/engine/outcomes.py)
        self.answered = False  # the API answered this client at least once (any status)
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
        """Send with retries; returns a response under 400 or raises RowError / FatalError.

        Redirects (301, 302, 303, 307, 308) are followed only to the same scheme, host and port
        (headers with keys never go to another host), for GET and HEAD, and for any method after a
        307 or 308 (they keep the method and the body). Any other redirect fails the row with the
        status and the Location (a POST is never turned into a GET that drops its body)."""
        for _ in range(MAX_REDIRECTS + 1):
            response = await self.call(lambda: self._client.request(method, url, **kwargs), tokens)
            if response.status_code not in REDIRECT_STATUSES:
                return response
            url = self._redirect_target(method, response)
            kwargs.pop("params", None)  # the Location has the whole query
        raise RowError(f"HTTP {response.status_code} to {_shown(httpx.URL(url))}: more than {MAX_REDIRECTS} "
                       f"redirects; check the base URL", status=response.status_code)

    def _redirect_target(self, method: str, response: httpx.Response) -> httpx.URL:
        """Where a redirect may be followed, or the row's RowError."""
        status, location = response.status_code, response.headers.get("location")
        if not location:
            raise RowError(f"HTTP {status} without a Location; check the base URL", status=status)
        target = response.request.url.join(location)
        same_origin = (target.scheme, target.host, target.port) == (response.request.url.scheme,
                                                                     response.request.url.host, response.request.url.port)
        if same_origin and (method.upper() in ("GET", "HEAD") or status in (307, 308)):
            return target
        advice = "the API moved; update the base URL" if status in PERMANENT_REDIRECTS else \
            f"not followed for {method.upper()} to {'this' if same_origin else 'another'} host; check the base URL"
        raise RowError(f"HTTP {status} to {_shown(target)}: {advice}", status=status)

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
                raise GaveUp(attempt.problem, attempts + throttled, status=attempt.status)
            self.stats.retries += 1
            wait = attempt.wait if attempt.wait is not None else self.retry.backoff(attempts + throttled)
            await asyncio.sleep(wait)

    def _no_answer(self, failure: TransportFailure) -> Attempt:
        """A try that got no answer: the problem to retry, or a FatalError when no call can work."""
        if failure.kind is NoAnswer.URL:
            raise FatalError(f"the {self.name} API's URL {self.base_url!r} cannot be used ({failure.text}): "
                             f"it needs http:// or https:// and a host")
        if failure.kind is NoAnswer.UNREACHABLE and self.first_calls and not self.answered:
            raise FatalError(f"the {self.name} API at {self.base_url} cannot be reached ({failure.text}) on the "
                             f"first calls of the run: check the URL and that the server is up")
        if failure.kind is NoAnswer.TIMEOUT:
            self.stats.timeouts += 1
            return Attempt(problem=f"timed out after {self.timeout:g} s")
        self.stats.connection_errors += 1
        return Attempt(problem=failure.text if failure.kind is NoAnswer.CONNECTION else f"connection error: {failure.text}")

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
        except (TimeoutError, httpx.TransportError, ConnectionError) as error:
            return self._no_answer(TransportFailure.of(error))
        self.answered = True
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
                         retry=self.retry, status_of=self.status_of, name=self.name)
