"""Fault injection and request accounting shared by every emulated API.

Each API gets one `ApiFaults`: settings (latency, rate limit, 5xx, 429 storms, hangs, API key)
that can be changed at run time, and an accounting of every request that arrived.
"""
from __future__ import annotations

import asyncio
import math
import random
import time
from array import array
from collections import Counter, deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class Settings:
    """Knobs of one emulated API. Latency is in seconds."""

    latency: float = 0.0  # fixed part (or the median for "lognormal")
    latency_dist: str = "fixed"  # fixed | uniform | lognormal
    latency_spread: float = 0.0  # uniform: +/- spread; lognormal: sigma
    rate_limit: int | None = None  # admitted requests per rate_window, 429 beyond
    rate_window: float = 1.0  # seconds: 1 for per-second, 60 for per-minute limits
    token_limit: int | None = None  # admitted tokens per rate_window (LLM APIs), 429 beyond
    error_rate: float = 0.0  # probability of an injected 5xx
    error_statuses: list[int] = field(default_factory=lambda: [500, 502, 503])
    throttle_rate: float = 0.0  # probability of a spurious 429
    storm_period: float = 0.0  # every storm_period seconds ...
    storm_duration: float = 0.0  # ... all requests get 429 for storm_duration seconds
    retry_after: float = 1.0  # Retry-After sent with injected 429s
    empty_rate: float = 0.0  # LLM APIs: probability of an empty completion
    hang_rate: float = 0.0  # probability that a request never answers (until hang_seconds)
    hang_seconds: float = 600.0
    lose_answer_rate: float = 0.0  # messaging: deliver, then lose the answer (error_statuses; 504 hangs)
    slow_keys: list[str] = field(default_factory=list)  # keys (e.g. user_ids) answered after slow_latency
    slow_latency: float = 0.0
    drive_root: str | None = None  # drive: a local directory tree served as a Drive folder
    drive_rate_limit_status: int = 403  # drive: the rate limit's answer (403 or 429) ...
    drive_rate_limit_reason: str = "userRateLimitExceeded"  # ... and reason (or rateLimitExceeded)
    html_rate: float = 0.0  # probability of a web page with HTTP 200 instead of the API's answer
    cut_rate: float = 0.0  # probability that the connection closes in the middle of the answer
    moved_to: str | None = None  # every request is answered `moved_status` with this Location
    moved_status: int = 301
    api_key: str | None = None  # None: any key accepted
    seed: int | None = None

    def update(self, changes: dict[str, Any]) -> None:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown emulator settings: {sorted(unknown)}")
        for name, value in changes.items():
            setattr(self, name, value)


class Rejection(Exception):
    """An injected failure: status, JSON body and headers for the response."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None):
        self.status, self.body, self.headers = status, body, headers or {}


class ApiFaults:
    """Settings + accounting for one API. All methods run on the server's event loop."""

    def __init__(self, name: str, initial: dict[str, Any] | None = None, counters: tuple[str, ...] = ()):
        self.name, self.initial, self.counter_names = name, dict(initial or {}), counters
        self.generation = self.in_flight = 0  # in_flight is a live gauge: a reset leaves it alone
        self.reset()

    def reset(self) -> None:
        """Forget every request and go back to the settings given at start-up."""
        self.settings = Settings()
        self.settings.update(self.initial)
        self.generation += 1  # answers to requests from before a reset are not counted
        self.started = time.monotonic()
        self.arrivals = array("d")  # monotonic arrival time of every request
        self.tokens = array("q")  # tokens each request asked for (LLM APIs), aligned with arrivals
        self.statuses: Counter[int] = Counter()
        self.by_key: Counter[str] = Counter()  # every request, per key (e.g. user_id)
        self.ok_by_key: Counter[str] = Counter()  # 2xx answers per key
        self.max_in_flight = 0
        self.hangs = 0
        self.counters: Counter[str] = Counter(dict.fromkeys(self.counter_names, 0))  # API-specific, in stats
        self.memory: dict[str, Any] = {}  # API-specific state (e.g. idempotent answers)
        self._admitted: deque[float] = deque()
        self._admitted_tokens: deque[tuple[float, int]] = deque()
        self._rng = random.Random(self.settings.seed)

    def configure(self, changes: dict[str, Any]) -> None:
        self.settings.update(changes)
        if "seed" in changes:
            self._rng = random.Random(self.settings.seed)

    async def gate(self, key: str | None, api_key: str | None, tokens: int = 0) -> None:
        """Account for a request, then apply auth, rate limits and injected faults (may raise Rejection)."""
        now = time.monotonic()
        self.arrivals.append(now)
        self.tokens.append(tokens)
        if key is not None:
            self.by_key[key] += 1
        s = self.settings
        if s.api_key is not None and api_key != s.api_key:
            raise Rejection(401, {"error": "unauthorized", "detail": "Invalid or missing API key"})
        if s.storm_period > 0 and (now - self.started) % s.storm_period < s.storm_duration:
            raise self._too_many(s.retry_after, "Rate limit exceeded (storm)")
        if s.rate_limit is not None:
            window = self._admitted
            while window and window[0] <= now - s.rate_window:
                window.popleft()
            if len(window) >= s.rate_limit:
                raise self._too_many(window[0] + s.rate_window - now, "Rate limit exceeded")
            window.append(now)
        if s.token_limit is not None:
            used = self._admitted_tokens
            while used and used[0][0] <= now - s.rate_window:
                used.popleft()
            if sum(n for _, n in used) + tokens > s.token_limit:
                wait = (used[0][0] + s.rate_window - now) if used else s.rate_window
                raise self._too_many(wait, "Token rate limit exceeded")
            used.append((now, tokens))
        rng = self._rng
        if s.throttle_rate and rng.random() < s.throttle_rate:
            raise self._too_many(s.retry_after, "Too many requests")
        if s.hang_rate and rng.random() < s.hang_rate:
            self.hangs += 1
            await asyncio.sleep(s.hang_seconds)
            raise Rejection(504, {"error": "timeout", "detail": "upstream timed out"})
        delay = s.slow_latency if key is not None and key in s.slow_keys else self._latency()
        if delay > 0:
            await asyncio.sleep(delay)
        if s.error_rate and rng.random() < s.error_rate:
            status = rng.choice(s.error_statuses)
            raise Rejection(status, {"error": "server_error", "detail": f"injected {status}"})

    def remaining(self) -> tuple[int | None, int | None]:
        """Requests and tokens still admitted in the current window (None where unlimited)."""
        s = self.settings
        requests = None if s.rate_limit is None else max(0, s.rate_limit - len(self._admitted))
        tokens = None if s.token_limit is None else max(0, s.token_limit - sum(n for _, n in self._admitted_tokens))
        return requests, tokens

    def chance(self, probability: float) -> bool:
        return bool(probability) and self._rng.random() < probability

    def pick(self, options: list[Any]) -> Any:
        return self._rng.choice(options)

    def _latency(self) -> float:
        s, rng = self.settings, self._rng
        if s.latency_dist == "uniform":
            return max(0.0, rng.uniform(s.latency - s.latency_spread, s.latency + s.latency_spread))
        if s.latency_dist == "lognormal" and s.latency > 0:
            return rng.lognormvariate(math.log(s.latency), s.latency_spread)
        return s.latency

    @staticmethod
    def _too_many(wait: float, detail: str) -> Rejection:
        seconds = max(1, math.ceil(wait))
        return Rejection(429, {"error": "rate_limited", "detail": detail}, {"Retry-After": str(seconds)})

    def record(self, key: str | None, status: int, generation: int, ok: bool | None = None) -> None:
        """Count an answer; `ok` (default: a 2xx status) is False for errors sent as HTTP 200."""
        if generation != self.generation:
            return
        self.statuses[status] += 1
        if key is not None and (200 <= status < 300 if ok is None else ok):
            self.ok_by_key[key] += 1

    def max_in_window(self, window: float = 1.0, weights: array | None = None) -> int:
        """Most requests (or tokens, with `weights`) that arrived within any `window` seconds."""
        order = sorted(range(len(self.arrivals)), key=self.arrivals.__getitem__)
        times = [self.arrivals[i] for i in order]
        sizes = [weights[i] for i in order] if weights is not None else [1] * len(order)
        best = total = lo = 0
        for hi, t in enumerate(times):
            total += sizes[hi]
            while times[lo] <= t - window:
                total -= sizes[lo]
                lo += 1
            best = max(best, total)
        return best

    def stats(self, window: float | None = None) -> dict[str, Any]:
        """Totals and maxima; with `window`, also the most requests and tokens in any `window` seconds."""
        arrivals = self.arrivals
        span = (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else 0.0
        extra = {"max_window": self.max_in_window(window),
                 "max_tokens_window": self.max_in_window(window, self.tokens)} if window else {}
        return {**extra,
            "api": self.name,
            "total": len(arrivals),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "max_1s": self.max_in_window(1.0),
            "max_60s": self.max_in_window(60.0),
            "tokens": sum(self.tokens),
            "max_tokens_60s": self.max_in_window(60.0, self.tokens),
            "span_seconds": round(span, 3),
            "distinct_keys": len(self.by_key),
            "repeated_keys": {k: n for k, n in self.by_key.items() if n > 1},
            "ok_repeated_keys": {k: n for k, n in self.ok_by_key.items() if n > 1},
            "ok_keys": len(self.ok_by_key),
            "max_in_flight": self.max_in_flight,
            "hangs": self.hangs,
            **self.counters,
            "settings": asdict(self.settings),
        }
