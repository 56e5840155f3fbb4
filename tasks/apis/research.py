"""Web research per company through the Serper search API, keyed by normalised domain.

One search per distinct company, whatever the number of leads at it: the flow collects the keys its
leads need and `tasks.engine.lookups.cached_lookup` searches only those the persistent cache lacks.
"""
from __future__ import annotations

import json
import re
from typing import Any

from tasks.apis.http import ApiClient
from tasks.engine.outcomes import RowError
from tasks.engine.tables import as_text

FREE_MAIL = {"gmail.com", "googlemail.com", "yahoo.com", "hotmail.com", "outlook.com", "live.com", "aol.com",
             "icloud.com", "me.com", "proton.me", "protonmail.com", "gmx.com", "gmx.de", "web.de", "mail.ru"}
SUMMARY_CHARS = 900


def normalise_domain(value: Any) -> str:
    """'https://WWW.Acme.com:443/about?x' -> 'acme.com'; '' when there is no usable host."""
    text = as_text(value).strip().lower()
    text = re.sub(r"^[a-z][a-z0-9+.-]*://", "", text)
    text = re.split(r"[/?#\s]", text, maxsplit=1)[0].rsplit("@", 1)[-1].split(":", 1)[0].strip(".")
    text = text.removeprefix("www.")
    return text if re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", text) else ""


def research_key(row: dict[str, Any]) -> tuple[str, str]:
    """(cache key, search query) for a lead: its company's domain (from `domain`, `website`, or a
    non-free-mail `email`), else the company name."""
    company = as_text(row.get("company")).strip()
    domain = normalise_domain(row.get("domain")) or normalise_domain(row.get("website"))
    if not domain:
        email_domain = normalise_domain(as_text(row.get("email")).strip().rpartition("@")[2])
        domain = "" if email_domain in FREE_MAIL else email_domain
    if domain:
        return domain, f"{company} {domain}".strip()
    if company:
        return "company:" + " ".join(company.lower().split()), company
    return "", ""


def summarise(answer: dict[str, Any], snippets: int = 4) -> tuple[str, list[str]]:
    """A short text about the company from the knowledge graph and top results, plus their links."""
    parts, links = [], []
    graph = answer.get("knowledgeGraph") or {}
    if graph.get("description"):
        parts.append(str(graph["description"]))
    for item in (answer.get("organic") or [])[:snippets]:
        if item.get("snippet"):
            parts.append(str(item["snippet"]))
        if item.get("link"):
            links.append(str(item["link"]))
    return " ".join(parts)[:SUMMARY_CHARS], links


async def search_company(row: dict[str, Any], clients: dict[str, ApiClient]) -> dict[str, Any]:
    """Chunk-engine handler for one company {key, query}: one Serper search."""
    response = await clients["search"].request("POST", "/search", json={"q": row["query"], "num": 10})
    try:
        summary, links = summarise(response.json())
    except (ValueError, AttributeError, TypeError):
        raise RowError(f"unexpected answer from the search API: {response.text[:200]!r}") from None
    return {"summary": summary, "sources": json.dumps(links)}
