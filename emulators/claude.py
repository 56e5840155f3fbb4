"""Anthropic Messages API: POST /v1/messages with x-api-key (or bearer) and anthropic-version.

Text prompts get llm.reply_to's line. PDF `document` blocks (base64) are read by the prescription
"model" (emulators.prescriptions): the answer is the fields as JSON text or, with `tools`, a `tool_use`
block filling the chosen tool's input_schema. Usage counts a PDF page as its text plus a page image,
and prompt caching: the prefix up to a `cache_control` breakpoint (>= 1024 tokens, 2048 for Haiku) is
written by a first request and read by later identical ones for its TTL. Limits as the real API: 32 MB
a request (413), 100 PDF pages (400). The Message Batches routes live in claude_batches.
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from emulators.faults import ApiFaults, Rejection, Settings
from emulators.http import bearer_key, guarded, json_object
from emulators.llm import cached_prefix, count_tokens, fill_schema, flatten, reply_to
from emulators.prescriptions import A4, ALIASES, extract, read_pdf

NAME = "anthropic"
COUNTERS = ("documents", "pdf_pages", "cache_writes", "cache_reads", "batches_created", "batch_requests",
            "batch_results")
CONTEXT_WINDOW = 200_000
MAX_REQUEST_BYTES = 32 * 1024 * 1024
MAX_PDF_PAGES = 100
MAX_BREAKPOINTS = 4
PAGE_DPI, PAGE_EDGE, PAGE_PIXELS = 200, 1568, 1_150_000  # a page image is scaled to fit; ~750 pixels a token
TOOL_PROMPT_TOKENS = {"auto": 346, "none": 346, "any": 313, "tool": 313}  # the tool-use system prompt
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
               500: "api_error", 529: "overloaded_error"}


@dataclass
class ClaudeSettings(Settings):
    """The shared knobs plus the Message Batches ones."""

    batch_seconds: float = 2.0  # a batch ends this long after its creation
    batch_error_rate: float = 0.0  # share of batch results `errored` (api_error or overloaded_error)
    batch_expire_rate: float = 0.0  # share of batch results `expired`
    batch_answer_delay: float = 0.0  # seconds a create's answer is held back after the batch exists
    batch_answer_lost_rate: float = 0.0  # share of creates answered 500 although the batch exists


class ClaudeFaults(ApiFaults):
    """ApiFaults whose settings are ClaudeSettings."""

    def __init__(self, name: str, initial: dict[str, Any] | None = None, counters: tuple[str, ...] = ()):
        initial = dict(initial or {})
        own = set(ClaudeSettings.__dataclass_fields__) - set(Settings.__dataclass_fields__)
        self.own_initial = {knob: initial.pop(knob) for knob in own if knob in initial}
        super().__init__(name, initial, counters)

    def reset(self) -> None:
        super().reset()
        self.settings = ClaudeSettings(**asdict(self.settings), **self.own_initial)


FAULTS = ClaudeFaults


def anthropic_error(status: int, body) -> dict:
    detail = body.get("detail") if isinstance(body, dict) else str(body)
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": str(detail)}}


def failure(status: int, message: str) -> Rejection:
    return Rejection(status, anthropic_error(status, {"detail": message}))


def api_key(request: Request) -> str | None:
    return request.headers.get("x-api-key") or bearer_key(request)  # anthropic SDK 2.x sends a bearer token


async def read_json(request: Request, limit: int) -> tuple[Any, bool]:
    """(the JSON body or None, whether it is over `limit` bytes: then it is drained, not kept)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        else:
            chunks.clear()
    if size > limit:
        return None, True
    try:
        return json.loads(b"".join(chunks)), False
    except ValueError:
        return None, False


def page_tokens(text: str, width: float, height: float) -> int:
    """A PDF page as Claude reads it: its text plus the page rendered as an image."""
    pixels = width * height * (PAGE_DPI / 72) ** 2
    scale = min(1.0, PAGE_EDGE / (max(width, height) * PAGE_DPI / 72), math.sqrt(PAGE_PIXELS / pixels))
    return (count_tokens(text) if text else 0) + math.ceil(pixels * scale * scale / 750)


def _blocks(content) -> list:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content or []


class Prompt:
    """A Messages request as the model reads it (raises a 400 Rejection where the API would)."""

    def __init__(self, body: dict):
        self.model, self.max_tokens, turns = body.get("model", "unknown"), body.get("max_tokens"), body.get("messages")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise failure(400, "max_tokens: Field required")
        if not turns or not isinstance(turns, list):
            raise failure(400, "messages: at least one message is required")
        system = body.get("system")
        self.text = " ".join([flatten(system)] + [flatten(m.get("content")) for m in turns if isinstance(m, dict)])
        self.documents: list[str] = []  # the text layer of each document ("" when it has none)
        self.segments: list[tuple[str, int, dict | None]] = []  # (fingerprint, tokens, cache_control), in order
        self.pages = 0
        tools = body.get("tools") or []
        for n, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                raise failure(400, f"tools.{n}.name: Field required")
            if tool.get("type", "custom") == "custom" and not isinstance(tool.get("input_schema"), dict):
                raise failure(400, f"tools.{n}.custom.input_schema: Field required")
            self._add(tool, count_tokens(json.dumps(tool)))
        for n, block in enumerate(_blocks(system)):
            self._block(block, f"system.{n}")
        for i, turn in enumerate(turns):
            for j, block in enumerate(_blocks(turn.get("content") if isinstance(turn, dict) else None)):
                self._block(block, f"messages.{i}.content.{j}")
        if self.pages > MAX_PDF_PAGES:
            raise failure(400, f"A maximum of {MAX_PDF_PAGES} PDF pages may be provided.")
        if (marks := sum(1 for *_, control in self.segments if control)) > MAX_BREAKPOINTS:
            raise failure(400, f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
                          f"Found {marks}.")
        choice = body.get("tool_choice")
        self.tool, overhead = self._tool_choice(choice if isinstance(choice, dict) else {"type": "auto"}, tools)
        self.tokens = sum(tokens for _, tokens, _ in self.segments) + overhead
        if self.tokens + self.max_tokens > CONTEXT_WINDOW:
            raise failure(400, f"prompt is too long: {self.tokens} tokens > {CONTEXT_WINDOW - self.max_tokens} maximum")

    def _add(self, block: dict, tokens: int) -> None:
        shown = json.dumps({k: v for k, v in block.items() if k != "cache_control"}, sort_keys=True)
        self.segments.append((hashlib.sha256(shown.encode()).hexdigest(), tokens, block.get("cache_control")))

    def _block(self, block: dict, where: str) -> None:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            tokens = count_tokens(str(block.get("text", "")))
        elif kind == "document":
            source = block.get("source")
            tokens = self._document(source if isinstance(source, dict) else {}, where)
        elif kind == "image":  # the model cannot read scans that come without a text layer
            self.documents.append("")
            tokens = page_tokens("", *A4)
        elif kind in ("tool_use", "tool_result"):
            tokens = count_tokens(json.dumps(block))
        else:
            raise failure(400, f"{where}: Input tag '{kind}' found using 'type' does not match any of the expected "
                          "tags: 'text', 'image', 'document', 'tool_use', 'tool_result'")
        self._add(block, tokens)

    def _document(self, source: dict, where: str) -> int:
        if source.get("type") == "text":
            self.documents.append(str(source.get("data", "")))
            return count_tokens(self.documents[-1])
        if source.get("type") != "base64":
            raise failure(400, f"{where}.document.source: Input tag '{source.get('type')}' found using 'type' does "
                          "not match any of the expected tags: 'base64', 'text'")
        if source.get("media_type") != "application/pdf":
            raise failure(400, f"{where}.document.source.base64.media_type: Input should be 'application/pdf'")
        try:
            pages = read_pdf(base64.b64decode(source.get("data") or "", validate=True))
        except ValueError:  # binascii.Error included
            raise failure(400, f"{where}.pdf.source.base64.data: The PDF specified was not valid.") from None
        self.pages += len(pages)
        self.documents.append("\n".join(text for text, _, _ in pages))
        return sum(page_tokens(*page) for page in pages)

    def _tool_choice(self, choice: dict, tools: list[dict]) -> tuple[dict | None, int]:
        kind = choice.get("type")
        if not tools:
            return None, 0
        if kind not in TOOL_PROMPT_TOKENS:
            raise failure(400, "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
        named = [tool for tool in tools if tool.get("name") == choice.get("name")]
        if kind == "tool" and not named:
            raise failure(400, f"tool_choice.name: Tool '{choice.get('name')}' not found in provided tools")
        tool = {"tool": named[0] if named else None, "any": tools[0], "none": None,
                "auto": tools[0] if self.documents else None}[kind]  # auto: the model reaches for it to report
        return tool, TOOL_PROMPT_TOKENS[kind]


def respond(prompt: Prompt, faults: ApiFaults, tier: str = "standard") -> dict:
    """The assistant's message for a prompt, with usage."""
    faults.counters["documents"] += len(prompt.documents)
    faults.counters["pdf_pages"] += prompt.pages
    if prompt.tool is not None or prompt.documents:
        fields = extract("\n".join(prompt.documents) if prompt.documents else prompt.text)
    if prompt.tool is not None:
        answer = fill_schema(fields, prompt.tool.get("input_schema") or {}, ALIASES)
        output = count_tokens(json.dumps(answer)) + 10  # + the tool_use block around the input
        cut = output > prompt.max_tokens
        content = [{"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": prompt.tool["name"],
                    "input": {} if cut else answer}]
        stop, output = ("max_tokens", prompt.max_tokens) if cut else ("tool_use", output)
    else:
        if faults.chance(faults.settings.empty_rate):
            text, cut = "", False
        elif prompt.documents:  # asked about a document without a tool: the fields as JSON text
            whole = json.dumps(fields, ensure_ascii=False, indent=2)
            text, cut = whole[:prompt.max_tokens * 4], len(whole) > prompt.max_tokens * 4
        else:
            text, cut = reply_to(prompt.text, prompt.max_tokens)
        content = [{"type": "text", "text": text}] if text else []
        stop, output = ("max_tokens" if cut else "end_turn"), (count_tokens(text) if text else 0)
    minimum = 2048 if "haiku" in str(prompt.model) else 1024  # the shortest prefix a model caches
    cache = faults.memory.setdefault("prompt_cache", {})  # emptied by a reset
    read, written, ttl = cached_prefix(cache, str(prompt.model), prompt.segments, minimum)
    faults.counters["cache_reads"] += bool(read)
    faults.counters["cache_writes"] += bool(written)
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant", "model": prompt.model,
        "content": content, "stop_reason": stop, "stop_sequence": None,
        "usage": {"input_tokens": prompt.tokens - read - written, "output_tokens": output,
                  "cache_creation_input_tokens": written, "cache_read_input_tokens": read,
                  "cache_creation": {"ephemeral_5m_input_tokens": written if ttl != 3600 else 0,
                                     "ephemeral_1h_input_tokens": written if ttl == 3600 else 0},
                  "service_tier": tier},
    }


def routes(faults: ApiFaults) -> list[Route]:
    async def messages(request: Request):
        body, too_large = await read_json(request, MAX_REQUEST_BYTES)
        try:
            prompt, problem = Prompt(json_object(body)), None
        except Rejection as rejection:
            prompt, problem = None, rejection
        settings = faults.settings
        requests_left, tokens_left = faults.remaining()
        headers = {"request-id": f"req_{uuid.uuid4().hex[:24]}"}
        if settings.rate_limit is not None:
            headers.update({"anthropic-ratelimit-requests-limit": str(settings.rate_limit),
                            "anthropic-ratelimit-requests-remaining": str(requests_left)})
        if settings.token_limit is not None:
            headers.update({"anthropic-ratelimit-tokens-limit": str(settings.token_limit),
                            "anthropic-ratelimit-tokens-remaining": str(tokens_left)})

        async def answer():
            if too_large:
                raise failure(413, "Request exceeds the maximum size")
            if not request.headers.get("anthropic-version"):
                raise failure(400, "anthropic-version: header is required")
            if problem is not None:
                raise problem
            return 200, respond(prompt, faults)

        tokens = prompt.tokens + prompt.max_tokens if prompt else 0
        return await guarded(faults, None, api_key(request), answer, tokens=tokens,
                             error_body=anthropic_error, headers=headers)

    return [Route("/v1/messages", messages, methods=["POST"])]
