"""What the emulated LLMs share: token estimates and a deterministic "model" reply."""
from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter


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
