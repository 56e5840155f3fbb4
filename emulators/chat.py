"""OpenAI-compatible chat completions (Groq, OpenAI, vLLM): /v1/... and Groq's /openai/v1/..."""
from __future__ import annotations

import time
import uuid

from starlette.requests import Request
from starlette.routing import Route

from emulators.faults import ApiFaults, Rejection
from emulators.http import bearer_key, guarded, json_body, json_object
from emulators.llm import count_tokens, flatten, reply_to

NAME = "chat"
CONTEXT_WINDOW = 131_072


def openai_error(status: int, body) -> dict:
    detail = body.get("detail") if isinstance(body, dict) else str(body)
    kind = {401: "invalid_request_error", 429: "rate_limit_exceeded"}.get(status, "server_error")
    return {"error": {"message": str(detail), "type": kind, "code": kind if status == 429 else None}}


def _invalid(message: str, code: str | None = None) -> Rejection:
    return Rejection(400, {"error": {"message": message, "type": "invalid_request_error", "code": code}})


def routes(faults: ApiFaults) -> list[Route]:
    async def completions(request: Request):
        body = json_object(await json_body(request))
        messages = body.get("messages")
        prompt = " ".join(flatten(m.get("content")) for m in messages or [] if isinstance(m, dict))
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 1024)
        tokens_in = count_tokens(prompt)
        requests_left, tokens_left = faults.remaining()
        settings = faults.settings
        headers = {"x-request-id": f"req_{uuid.uuid4().hex[:20]}"}
        if settings.rate_limit is not None:
            headers.update({"x-ratelimit-limit-requests": str(settings.rate_limit),
                            "x-ratelimit-remaining-requests": str(requests_left),
                            "x-ratelimit-reset-requests": f"{settings.rate_window:g}s"})
        if settings.token_limit is not None:
            headers.update({"x-ratelimit-limit-tokens": str(settings.token_limit),
                            "x-ratelimit-remaining-tokens": str(tokens_left),
                            "x-ratelimit-reset-tokens": f"{settings.rate_window:g}s"})

        async def answer():
            if not messages:
                raise _invalid("'messages' must contain at least one message")
            if tokens_in + max_tokens > CONTEXT_WINDOW:
                raise _invalid(f"This model's maximum context length is {CONTEXT_WINDOW} tokens. However, you "
                               f"requested {tokens_in + max_tokens} tokens.", "context_length_exceeded")
            text, cut = ("", False) if faults.chance(settings.empty_rate) else reply_to(prompt, max_tokens)
            tokens_out = count_tokens(text) if text else 0
            return 200, {
                "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", "unknown"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "length" if cut else "stop"}],
                "usage": {"prompt_tokens": tokens_in, "completion_tokens": tokens_out,
                          "total_tokens": tokens_in + tokens_out},
            }

        return await guarded(faults, None, bearer_key(request), answer, tokens=tokens_in + max_tokens,
                             error_body=openai_error, headers=headers)

    return [Route(path, completions, methods=["POST"])
            for path in ("/v1/chat/completions", "/openai/v1/chat/completions")]
