"""LLM calls for the chunk engine: Anthropic Messages (through the `anthropic` SDK) and any
OpenAI-compatible chat-completions API (Groq, OpenAI, vLLM: through httpx), chosen by configuration.

Both run under the engine's shared limits (requests/min and tokens/min per provider, each call
charged its estimated tokens) and retry loop (429 with retry-after or `x-ratelimit-*` reset times,
5xx, 529, timeouts). Usage comes from each response, $ from a price table; a 400 such as a too long
prompt becomes a row error.
"""
from __future__ import annotations

import asyncio
import json
import math
import os
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from tasks.apis.http import ApiClient, ApiSpec, ErrorAnswer, RetryPolicy
from tasks.engine.job import Limits
from tasks.engine.outcomes import RowError
from tasks.engine.params_cli import read_settings
from tasks.engine.secrets import Secret
from tasks.engine.tables import as_text

PROVIDERS = {  # default endpoint, API-key env var, default model
    "anthropic": ("https://api.anthropic.com", "ANTHROPIC_API_KEY", "claude-haiku-5-5"),
    "openai": ("https://api.groq.com/openai/v1", "OPENAI_API_KEY", "llama-3.3-70b-versatile"),
}
PROMPT_TOKENS_HINT = 1000  # a typical prompt's size, kept spare under a tokens/min limit
CACHE_MIN_TOKENS = 1024  # a system prompt shorter than this cannot be cached by Anthropic
MULTI_ITEM_RULES = (
    "\n\nYou get several items, each inside <item id=\"N\">...</item>. Do the task for each item on its own. "
    "Answer with only a JSON array, one object per item, in any order: [{\"id\": N, \"text\": \"...\"}]."
)


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cache_write: float | None = None  # default 1.25 x input (Anthropic 5-minute cache)
    cache_read: float | None = None  # default 0.1 x input

    def cost(self, tokens_in: int, tokens_out: int, cache_write: int = 0, cache_read: int = 0) -> float:
        write = self.input * 1.25 if self.cache_write is None else self.cache_write
        read = self.input * 0.1 if self.cache_read is None else self.cache_read
        return (tokens_in * self.input + tokens_out * self.output + cache_write * write + cache_read * read) / 1e6


# List prices, standard (not batch) rates, as published in October 2026. Pass a price file to override.
DEFAULT_PRICES = {
    "claude-fable-5-1": Price(10, 50), "claude-opus-5-5": Price(4, 20, 5, 0.2), "claude-opus-5": Price(5, 25),
    "claude-sonnet-5-5": Price(2, 10, 2.5, 0.1), "claude-sonnet-5": Price(2, 10, 2.5, 0.2),
    "claude-haiku-5-5": Price(0.1, 0.5, 0.125, 0.01), "claude-haiku-4-5": Price(1, 5),
    "claude-opus-4-5": Price(5, 25), "claude-sonnet-4-6": Price(3, 15), "claude-sonnet-4-5": Price(3, 15),
    "llama-3.3-70b-versatile": Price(0.59, 0.79, 0, 0.295), "llama-3.1-8b-instant": Price(0.05, 0.08, 0, 0.025),
    "gpt-4o-mini": Price(0.15, 0.6, 0, 0.075), "gpt-4.1-mini": Price(0.4, 1.6, 0, 0.1),
}


def load_prices(path: str | os.PathLike | None) -> dict[str, Price]:
    """The default table, updated from a JSON/YAML file {model: {input, output, cache_write?, cache_read?}}."""
    table = dict(DEFAULT_PRICES)
    if path:
        raw = read_settings(path)
        for model, values in raw.items():
            try:
                table[model] = Price(**values)
            except TypeError as error:
                raise ValueError(f"{path}: price of {model!r}: {error}; give input, output "
                                 "(and optionally cache_write, cache_read) in USD per million tokens") from None
    return table


def price_for(model: str, table: dict[str, Price]) -> Price | None:
    """Exact name, else the longest listed name it starts with (dated snapshots)."""
    if model in table:
        return table[model]
    matches = [name for name in table if model.startswith(name)]
    return table[max(matches, key=len)] if matches else None


class PromptTemplate:
    """A prompt with `{column}` placeholders filled from the row (`{{` and `}}` for literal braces)."""

    def __init__(self, text: str, source: str = "prompt"):
        self.text, self.source = text, source
        try:
            self.fields = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
        except ValueError as error:
            raise ValueError(f"{source}: not a valid template ({error}); write {{{{ and }}}} for literal braces") from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PromptTemplate":
        return cls(Path(path).read_text(encoding="utf-8"), str(path))

    def check(self, available: list[str], what: str) -> None:
        """Raise before any call if a placeholder names no available column."""
        unknown = [name for name in dict.fromkeys(self.fields) if name not in available]
        if "" in unknown:
            raise ValueError(f"{self.source}: empty placeholder {{}}: name a column, e.g. {{company}}")
        if unknown:
            raise ValueError(f"{self.source}: placeholder(s) {', '.join('{' + n + '}' for n in unknown)} "
                             f"not found in {what}; available: {', '.join(available)}")

    def render(self, values: dict[str, Any]) -> str:
        return self.text.format_map({name: as_text(values.get(name)) for name in self.fields})


@dataclass
class Completion:
    text: str
    stop: str  # end | length | refusal | filter
    input_tokens: int
    output_tokens: int
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float | None = None


def _settle(future: asyncio.Future, outcome: Any) -> None:
    if not future.done():  # a row cancelled meanwhile (run aborted) takes nothing
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def parse_items(text: str) -> dict[int, str]:
    """id -> text from a multi-item answer (a JSON array, maybe in a code fence); {} if unreadable."""
    start, end = text.find("["), text.rfind("]")
    try:
        items = json.loads(text[start:end + 1]) if 0 <= start < end else []
    except ValueError:
        return {}
    found = {}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and isinstance(item.get("id"), int) and isinstance(item.get("text"), str):
            found[item["id"]] = item["text"]
    return found


@dataclass(frozen=True)
class LlmSpec:
    """Provider, model and limits; `client()` gives the per-chunk `LlmClient` (engine protocol)."""

    provider: str
    model: str
    api_key: Secret
    base_url: str = ""
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    max_tokens: int = 300
    temperature: float | None = None  # None: the model's default (some models reject any other)
    timeout: float = 120.0
    price: Price | None = None
    limit_window: float = 60.0  # seconds the provider counts its limits over
    items_per_request: int = 1  # >1: several rows' prompts answered by one call (see `complete_item`)
    batch_wait: float = 0.05  # seconds a partly filled multi-item call waits for more rows
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    name: str = "llm"

    def __post_init__(self):
        if self.provider not in PROVIDERS:
            raise ValueError(f"provider must be one of {sorted(PROVIDERS)}, not {self.provider!r}")
        object.__setattr__(self, "base_url", (self.base_url or PROVIDERS[self.provider][0]).rstrip("/"))

    @property
    def fingerprint(self) -> str:
        return f"{self.base_url}#{self.model}"

    @property
    def row_rate_limit(self) -> float | None:
        """The most rows per second its requests/min limit lets through (`items_per_request` rows a call)."""
        return self.requests_per_minute / 60 * self.items_per_request if self.requests_per_minute else None

    @property
    def api(self) -> ApiSpec:
        per_second = lambda per_minute: per_minute / 60 if per_minute else None  # noqa: E731
        secret = {"Authorization": self.api_key.bearer()} if self.provider == "openai" else {}
        return ApiSpec(self.name, self.base_url, timeout=self.timeout, rate_window=self.limit_window,
                       rate_per_second=per_second(self.requests_per_minute),
                       tokens_per_second=per_second(self.tokens_per_minute),
                       max_call_tokens=self.items_per_request * (self.max_tokens + PROMPT_TOKENS_HINT),
                       limit_id=f"{self.base_url}#{self.model}", secret_headers=secret, retry=self.retry)

    def client(self, concurrency: int, limits: Limits) -> "LlmClient":
        return LlmClient(self, self.api.client(concurrency, limits))


class LlmClient:
    """`await llm.complete(system, user)` -> Completion; raises RowError / FatalError."""

    def __init__(self, spec: LlmSpec, api: ApiClient):
        self.spec, self.api = spec, api
        self.stats = api.stats
        self._sdk = None
        self._chars = self._tokens = 0  # calibrates the chars -> tokens estimate from real usage
        self._waiting: dict[str, list[tuple[str, asyncio.Future]]] = {}  # system prompt -> rows waiting
        self._calls: set[asyncio.Task] = set()

    async def __aenter__(self) -> "LlmClient":
        await self.api.__aenter__()
        if self.spec.provider == "anthropic":
            from anthropic import AsyncAnthropic

            self._sdk = AsyncAnthropic(api_key=self.spec.api_key.reveal(), base_url=self.spec.base_url,
                                       max_retries=0, timeout=self.spec.timeout)  # retries are ours
        return self

    async def __aexit__(self, *exc) -> None:
        if self._sdk is not None:
            await self._sdk.close()
        await self.api.__aexit__(*exc)

    def close(self) -> None:
        self.api.close()

    def estimate_tokens(self, prompt_chars: int, max_tokens: int) -> int:
        """What the call counts against a tokens/min limit: prompt tokens + max_tokens."""
        ratio = self._tokens / self._chars if self._chars else 0.25
        return math.ceil(prompt_chars * max(ratio, 0.25)) + max_tokens

    async def complete_item(self, system: str, user: str) -> Completion:
        """One row's completion. With `items_per_request` > 1, rows with the same system prompt
        share a call (up to that many, or what arrived within `batch_wait`); the call's usage and
        cost are split between them, and a row the answer does not cover gets a call of its own."""
        if self.spec.items_per_request <= 1:
            return await self.complete(system, user)
        future = asyncio.get_running_loop().create_future()
        waiting = self._waiting.setdefault(system, [])
        waiting.append((user, future))
        if len(waiting) >= self.spec.items_per_request:
            self._start(system)
        elif len(waiting) == 1:
            asyncio.get_running_loop().call_later(self.spec.batch_wait, self._start, system, waiting)
        return await future

    def _start(self, system: str, group: list | None = None) -> None:
        if group is not None and self._waiting.get(system) is not group:
            return  # that group was already sent
        items = self._waiting.pop(system, [])
        if items:
            call = asyncio.create_task(self._complete_items(system, items))
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)

    async def _complete_items(self, system: str, items: list[tuple[str, asyncio.Future]]) -> None:
        prompt = "\n\n".join(f'<item id="{n}">\n{user}\n</item>' for n, (user, _) in enumerate(items, 1))
        texts, answer = {}, None
        try:
            answer = await self.complete(system + MULTI_ITEM_RULES, prompt, self.spec.max_tokens * len(items) + 50)
            texts = parse_items(answer.text)
        except Exception as error:
            if not isinstance(error, RowError) or error.retryable:  # FatalError, transient failure: every row
                for _, future in items:
                    _settle(future, error)
                return
            # a 400 (e.g. the joint prompt is too long): each row gets a call of its own below
        share = 1 / max(1, sum(1 for n in range(1, len(items) + 1) if n in texts))
        for n, (_, future) in enumerate(items, 1):
            if n in texts:
                _settle(future, Completion(
                    texts[n], "end" if answer.stop == "length" else answer.stop,
                    round(answer.input_tokens * share), round(answer.output_tokens * share),
                    round(answer.cache_write_tokens * share), round(answer.cache_read_tokens * share),
                    None if answer.cost_usd is None else round(answer.cost_usd * share, 8)))
        alone = [(user, future) for n, (user, future) in enumerate(items, 1) if n not in texts]
        results = await asyncio.gather(*(self.complete(system, user) for user, _ in alone), return_exceptions=True)
        for (_, future), result in zip(alone, results):
            _settle(future, result)

    async def complete(self, system: str, user: str, max_tokens: int | None = None) -> Completion:
        max_tokens = max_tokens or self.spec.max_tokens
        tokens = self.estimate_tokens(len(system) + len(user) + 1, max_tokens)
        if self.spec.provider == "anthropic":
            answer = await self._anthropic(system, user, tokens, max_tokens)
        else:
            answer = await self._openai(system, user, tokens, max_tokens)
        self._chars += len(system) + len(user) + 1
        self._tokens += answer.input_tokens + answer.cache_read_tokens + answer.cache_write_tokens
        answer.cost_usd = self._cost(answer.input_tokens, answer.output_tokens, answer.cache_write_tokens,
                                     answer.cache_read_tokens)
        return answer

    async def _anthropic(self, system: str, user: str, tokens: int, max_tokens: int) -> Completion:
        params: dict[str, Any] = {"max_tokens": max_tokens, "messages": [{"role": "user", "content": user}]}
        if self.spec.temperature is not None:
            params["temperature"] = self.spec.temperature
        message = await self.message(params, tokens, system)
        usage = message.usage
        text = "".join(block.text for block in message.content if block.type == "text")
        stop = {"max_tokens": "length", "refusal": "refusal"}.get(message.stop_reason or "", "end")
        return Completion(text, stop, usage.input_tokens, usage.output_tokens,
                          usage.cache_creation_input_tokens or 0, usage.cache_read_input_tokens or 0)

    def anthropic_params(self, params: dict[str, Any], system: str = "") -> dict[str, Any]:
        """Messages parameters with the model and the system prompt (cacheable when long enough)."""
        params = {"model": self.spec.model, **params}
        if system:
            block = {"type": "text", "text": system}
            if len(system) / 4 >= CACHE_MIN_TOKENS:
                block["cache_control"] = {"type": "ephemeral"}
            params["system"] = [block]
        return params

    async def message(self, params: dict[str, Any], tokens: int, system: str = ""):
        """One Anthropic Messages call with any content (documents, tools); returns the SDK Message."""
        params = self.anthropic_params(params, system)
        answer = await self.sdk_call(lambda sdk: sdk.messages.with_raw_response.create(**params), tokens)
        return await answer.parse()

    async def sdk_call(self, make: Callable[[Any], Awaitable[Any]], tokens: int = 0) -> Any:
        """`make(sdk)` (a coroutine on the Anthropic SDK client) under the limits and retries: the
        SDK's HTTP errors, timeouts and connection errors are handed to our retry loop."""
        import anthropic

        async def send():
            try:
                return await make(self._sdk)
            except anthropic.APIStatusError as error:
                raise ErrorAnswer(error.response) from None
            except anthropic.APITimeoutError:
                raise TimeoutError from None
            except anthropic.APIConnectionError as error:
                raise ConnectionError(str(error)) from None

        return await self.api.call(send, tokens)

    def cost(self, usage) -> float | None:
        """$ of an Anthropic `usage` at this model's price."""
        return self._cost(usage.input_tokens, usage.output_tokens, usage.cache_creation_input_tokens or 0,
                          usage.cache_read_input_tokens or 0)

    def _cost(self, tokens_in: int, tokens_out: int, cache_write: int, cache_read: int) -> float | None:
        if self.spec.price is None:
            return None
        return round(self.spec.price.cost(tokens_in, tokens_out, cache_write, cache_read), 8)

    async def _openai(self, system: str, user: str, tokens: int, max_tokens: int) -> Completion:
        spec = self.spec
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        body: dict[str, Any] = {"model": spec.model, "messages": messages, "max_tokens": max_tokens}
        if spec.temperature is not None:
            body["temperature"] = spec.temperature
        response = await self.api.request("POST", "/chat/completions", tokens=tokens, json=body)
        try:
            data = response.json()
            choice, usage = data["choices"][0], data.get("usage") or {}
            message = choice.get("message") or {}
        except (ValueError, KeyError, IndexError, TypeError):
            raise RowError(f"unexpected answer from {spec.base_url}: {response.text[:200]!r}") from None
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        stop = {"length": "length", "content_filter": "filter"}.get(choice.get("finish_reason"), "end")
        if message.get("refusal"):
            stop = "refusal"
        return Completion(message.get("content") or "", stop, (usage.get("prompt_tokens") or 0) - cached,
                          usage.get("completion_tokens") or 0, 0, cached)
