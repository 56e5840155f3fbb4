"""What the emulated LLMs share: token estimates and a deterministic "model" reply."""
from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections import Counter

CACHE_TTL = {"5m": 300, "1h": 3600}  # seconds a cached prompt prefix lives, refreshed by each read


def count_tokens(text: str) -> int:
    """About four characters a token, like the real tokenizers on English text."""
    return max(1, math.ceil(len(text) / 4))


def _line(prompt: str) -> str:
    names = Counter(re.findall(r"\b[A-Z][a-z]+(?: [A-Z][a-z]+)+\b", prompt))  # "Acme Logistics"
    subject = names.most_common(1)[0][0] if names else "your team"
    tag = hashlib.sha256(prompt.encode()).hexdigest()[:6]
    return (f"Congratulations on the recent progress at {subject} — I would love to show you how teams like "
            f"yours cut manual work in half (ref {tag}).")


def reply_to(prompt: str, max_tokens: int) -> tuple[str, bool]:
    """A deterministic answer built from the prompt; (text, cut short by max_tokens). A prompt of
    several `<item id="N">` blocks gets a JSON array with one answer per item, as a model asked so would."""
    items = re.findall(r'<item id="(\d+)">(.*?)</item>', prompt, re.DOTALL)
    if items:
        text = json.dumps([{"id": int(n), "text": _line(body)} for n, body in items], ensure_ascii=False)
    else:
        text = _line(prompt)
    limit = max_tokens * 4
    return (text[:limit], True) if len(text) > limit else (text, False)


def flatten(content) -> str:
    """Text of a message content: a string, or a list of blocks with "text"."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(block.get("text", "")) for block in content if isinstance(block, dict))
    return ""


def cached_prefix(cache: dict[str, float], salt: str, segments: list[tuple[str, int, dict | None]],
                  minimum: int) -> tuple[int, int, int]:
    """Anthropic-style prompt caching over `segments` (fingerprint, tokens, cache_control) in prompt order:
    the longest prefix ending at a breakpoint found in `cache` (key -> expiry) is read, the rest up to the
    last breakpoint written; prefixes under `minimum` tokens are not cached. -> (read, written, TTL)."""
    digest, total, points = hashlib.sha256(salt.encode()), 0, []
    for fingerprint, tokens, control in segments:
        digest.update(fingerprint.encode())
        total += tokens
        if control and total >= minimum:
            points.append((digest.hexdigest(), total, CACHE_TTL.get(control.get("ttl"), 300)))
    if not points:
        return 0, 0, 0
    now = time.monotonic()
    read = next((tokens for key, tokens, _ in reversed(points) if cache.get(key, 0) > now), 0)
    if len(cache) > 10_000:  # keep it small: forget what has expired
        for key in [key for key, until in cache.items() if until <= now]:
            del cache[key]
    cache.update((key, now + ttl) for key, _, ttl in points)
    return read, points[-1][1] - read, points[-1][2]


def fill_schema(record: dict, schema: dict, aliases: dict[str, tuple[str, ...]]) -> dict:
    """`record` shaped to a tool's JSON schema, as a model asked for structured output answers it.

    Each property takes the record's field of that name (case and separators ignored) or of an alias
    (`aliases`: normalised name -> candidate fields), coerced to the property's type; an object
    property with no such field is filled from the same record; what the record lacks is None.
    `$ref`/`$defs` and `anyOf` with null (pydantic's Optional) are followed."""
    defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}

    def resolve(node: dict) -> dict:
        while isinstance(node, dict) and "$ref" in node:
            node = defs.get(node["$ref"].rsplit("/", 1)[-1], {})
        options = [o for o in node.get("anyOf") or node.get("oneOf") or [] if o.get("type") != "null"]
        return resolve(options[0]) if options else node

    def field(value: dict, name: str, node: dict):
        key = _normal(name)
        found = [value[f] for f in value if _normal(f) == key] + [value[f] for f in aliases.get(key, ()) if f in value]
        if "properties" in node:  # an object: a field that is one, or else the same record
            return next((v for v in found if isinstance(v, dict)), value)
        return found[0] if found else None

    def fit(value, node: dict):
        node = resolve(node)
        kinds = node.get("type") if isinstance(node.get("type"), list) else [node.get("type")]
        if isinstance(value, dict) and "properties" in node:
            return {name: fit(field(value, name, resolve(sub)), sub) for name, sub in node["properties"].items()}
        if value is None:
            return None
        if "array" in kinds:
            return [fit(item, node.get("items") or {}) for item in (value if isinstance(value, list) else [value])]
        if "enum" in node:
            text = str(value).lower()
            return next((o for o in node["enum"] if str(o).lower() == text),
                        next((o for o in node["enum"] if str(o)[:1].lower() == text[:1]), None))
        if "integer" in kinds or "number" in kinds:
            number = re.search(r"-?\d+(?:\.\d+)?", str(value))
            return None if number is None else int(float(number[0])) if "integer" in kinds else float(number[0])
        if "string" in kinds and not isinstance(value, str):
            return json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)
        return value

    return fit(record, schema)


def _normal(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())
