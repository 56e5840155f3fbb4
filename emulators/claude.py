"""Anthropic Messages API: POST /v1/messages with x-api-key and anthropic-version."""
from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.routing import Route

from emulators.faults import ApiFaults, Rejection
from emulators.http import bearer_key, guarded, json_body, json_object
from emulators.llm import count_tokens, flatten, reply_to

NAME = "anthropic"
CONTEXT_WINDOW = 200_000
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
               500: "api_error", 529: "overloaded_error"}


def anthropic_error(status: int, body) -> dict:
    detail = body.get("detail") if isinstance(body, dict) else str(body)
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": str(detail)}}


def _invalid(message: str) -> Rejection:
    return Rejection(400, anthropic_error(400, {"detail": message}))


def routes(faults: ApiFaults) -> list[Route]:
    async def messages(request: Request):
        body = json_object(await json_body(request))
        turns = body.get("messages")
        prompt = " ".join([flatten(body.get("system"))] +
                          [flatten(m.get("content")) for m in turns or [] if isinstance(m, dict)])
        max_tokens = body.get("max_tokens")
        tokens_in = count_tokens(prompt)
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
            if not request.headers.get("anthropic-version"):
                raise _invalid("anthropic-version: header is required")
            if not isinstance(max_tokens, int) or max_tokens < 1:
                raise _invalid("max_tokens: Field required")
            if not turns:
                raise _invalid("messages: at least one message is required")
            if tokens_in + max_tokens > CONTEXT_WINDOW:
                raise _invalid(f"prompt is too long: {tokens_in} tokens > {CONTEXT_WINDOW - max_tokens} maximum")
            text, cut = ("", False) if faults.chance(settings.empty_rate) else reply_to(prompt, max_tokens)
            return 200, {
                "id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
                "model": body.get("model", "unknown"),
                "content": [{"type": "text", "text": text}] if text else [],
                "stop_reason": "max_tokens" if cut else "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": tokens_in, "output_tokens": count_tokens(text) if text else 0,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
            }

        key = request.headers.get("x-api-key") or bearer_key(request)  # anthropic SDK 2.x sends a bearer token
        return await guarded(faults, None, key, answer,
                             tokens=tokens_in + (max_tokens if isinstance(max_tokens, int) else 0),
                             error_body=anthropic_error, headers=headers)

    return [Route("/v1/messages", messages, methods=["POST"])]
