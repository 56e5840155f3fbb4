"""Personalised emails: research each lead's company once (Serper), then one LLM-written opening
line (or body) per lead; output in input order with tokens, $ and a status per row.

Rows: `ok`, `partial` (written, but empty / refused / cut short / without research: see `error`) or
`failed` (bad input, or the research or LLM call failed; transient failures are retried on rerun).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
from prefect import flow, get_run_logger
from pydantic import Field

from tasks.apis.endpoints import LlmEndpoint, PricesFile, SerperEndpoint
from tasks.apis.http import ApiSpec
from tasks.apis.llm import (
    PROVIDERS,
    LlmClient,
    LlmSpec,
    PromptTemplate,
    load_prices,
    price_for,
)
from tasks.apis.messaging import InvalidEmail, MailboxRegister, parse_email
from tasks.apis.research import company_key, search_company
from tasks.engine.job import Job, RunOptions
from tasks.engine.lookups import AttachAnswers, LookupCache, cached_lookup
from tasks.engine.outcomes import Partial, RowError
from tasks.engine.params import (
    ChunkSize,
    Cli,
    Concurrency,
    Emulate,
    Encoding,
    FailedFraction,
    Help,
    InputFile,
    Limit,
    OutputFile,
    Positive,
    Rate,
    Runner,
    Workers,
)
from tasks.engine.preflight import check_paths
from tasks.engine.run import default_work_dir, run_job
from tasks.engine.secrets import resolve_secret
from tasks.engine.storage import local_dir
from tasks.engine.tables import InputError, as_text, read_chunks
from tasks.samples.emulated import run_emulated

REQUIRED = ("email", "first_name", "company")
SYSTEM = {
    "line": "You write the opening line of a cold email. One sentence, at most 30 words, specific to the "
            "recipient's company, warm and plain. No greeting, no sign-off, no placeholders, no quotes.",
    "body": "You write the body of a short cold email (under 120 words, 2-3 short paragraphs) that opens "
            "with something specific to the recipient's company. No subject line, no placeholders.",
}
USER = ("Recipient: {first_name} at {company} ({domain}).\n"
        "What we found about the company: {research_summary}\n\nWrite it now.")
LEFTOVER = re.compile(r"\{[a-z_]+\}|\[(?:first name|name|company|your name)\]", re.IGNORECASE)


async def write_email(row: dict[str, Any], clients: dict[str, LlmClient], *, system: PromptTemplate,
                      user: PromptTemplate, column: str,
                      repeated_spellings: dict[str, int]) -> dict[str, Any] | Partial:
    """Chunk-engine handler: the lead's research (`_answer`, attached on the flow side), then one LLM call.
    `repeated_spellings`: another spelling of an earlier lead's mailbox -> that lead's row."""
    email = as_text(row.get("email")).strip()
    try:
        parse_email(email)
    except InvalidEmail as error:
        raise RowError(f"column email: {email[:80]!r} is not an email address ({error})", bad_input=True) from None
    if email in repeated_spellings:  # the engine fails a repeat of the same spelling (key_column), this another
        raise RowError(f"column email: duplicate email {email!r} (first seen at row {repeated_spellings[email]}, "
                       "the same mailbox)", bad_input=True)
    company = company_key(row)
    if company is None:
        raise RowError("columns company and domain/website: both empty, nothing to research", bad_input=True)
    key = company.key
    found = row["_answer"]
    if found is None:
        raise RowError(f"research for {key} failed: {row['_failure']}", retryable=True)
    values = {**row, "research_summary": found["summary"]}
    if not as_text(values.get("domain")).strip():
        values["domain"] = company.domain
    answer = await clients["llm"].complete_item(system.render(values), user.render(values))
    text = answer.text.strip().strip('"“”').strip()
    if column == "email_line":
        text = next((line.strip() for line in text.splitlines() if line.strip()), "")
    result = {"research_summary": found["summary"], "research_key_kind": str(company.kind), column: text,
              "input_tokens": answer.input_tokens, "output_tokens": answer.output_tokens, "cost_usd": answer.cost_usd}
    problem = ("empty completion" if not text else
               f"the model declined ({answer.stop})" if answer.stop in ("refusal", "filter") else
               "cut short at max_tokens" if answer.stop == "length" else
               "a template placeholder is left in the text" if LEFTOVER.search(text) else
               f"no web results for {key}" if not found["summary"] else "")
    return Partial(result, problem) if problem else result


def research_key_of(row: dict[str, Any]) -> str:
    """The lead's company key ("" when it has none)."""
    company = company_key(row)
    return company.key if company else ""


def lead_companies(input_path: str, limit: int | None, available: list[str], mailboxes: MailboxRegister,
                   encoding: str) -> pd.DataFrame:
    """The distinct (research key, query) pairs of the leads to process (valid email, first of its
    mailbox, registered in `mailboxes`), first seen first."""
    items, seen = {}, 0
    for frame in read_chunks(input_path, 20_000, required=REQUIRED, encoding=encoding):
        if limit is not None:
            frame = frame.iloc[: max(0, limit - seen)]
        seen += len(frame)
        if not available:
            available.extend(c for c in frame.columns if not c.startswith("_"))
        for row in frame[frame["_input_error"] == ""].to_dict("records"):
            try:
                if not mailboxes.add(as_text(row.get("email")), row["_row"]):
                    continue  # a mailbox seen before: the row fails as a duplicate, nothing to research
            except InvalidEmail:
                continue  # the row fails as not an email address
            company = company_key(row)
            if company is not None:
                items.setdefault(company.key, company.query)
        if limit is not None and seen >= limit:
            break
    if available and not {"domain", "website"} & set(available):
        raise InputError(f"{input_path}: needs a 'domain' or 'website' column; found {', '.join(available)}")
    return pd.DataFrame({"key": list(items), "query": list(items.values())})


TemplateFile = Annotated[str | None, Help("a template file with {column} placeholders (plus {research_summary} "
                                            "and {domain}); default: the built-in one")]


@flow(name="personalised-emails")
def personalised_emails(
    input_path: Annotated[InputFile, Help("leads with email, first_name, company and domain or website columns")],
    output_path: OutputFile,
    provider: Annotated[Literal["anthropic", "openai"], Help(
        "anthropic, or an OpenAI-compatible API (Groq, OpenAI, vLLM) at --llm-base-url")] = "anthropic",
    model: Annotated[str | None, Help("model name (default: claude-haiku-5-5 / llama-3.3-70b-versatile)")] = None,
    prompt_file: TemplateFile = None,
    system_file: TemplateFile = None,
    write: Annotated[Literal["line", "body"], Help("an opening line or an email body")] = "line",
    limit: Limit = None,
    runner: Runner = "thread",
    workers: Workers = None,
    concurrency: Concurrency = 50,
    chunk_size: ChunkSize = 100,
    llm: LlmEndpoint = LlmEndpoint(),
    max_tokens: Annotated[Positive | None, Help("per completion (default 120 for a line, 400 for a body)")] = None,
    temperature: Annotated[float | None, Field(ge=0, le=2), Help("default: the model's own")] = None,
    prices_file: Annotated[PricesFile, Cli(("--prices",))] = None,
    search: SerperEndpoint = SerperEndpoint(),
    research_max_age_days: Annotated[Rate, Help("research older than this is done again")] = 30,
    leads_per_request: Annotated[Positive, Help("leads answered by one LLM call; give --concurrency at least "
                                                "this times the calls you want in flight")] = 1,
    encoding: Encoding = "utf-8-sig",
    max_failed_fraction: FailedFraction = 0.5,
    emulate: Emulate = False,
) -> dict[str, Any]:
    """Research every lead's company, write its email line/body; output = input + results, in order."""
    if emulate:
        return run_emulated(personalised_emails, locals())
    check_paths(inputs=(input_path,), outputs=(output_path,), files=(prompt_file, system_file, prices_file))
    logger = get_run_logger()
    _, key_env, default_model = PROVIDERS[provider]
    model = model or default_model
    system = PromptTemplate.load(system_file) if system_file else PromptTemplate(SYSTEM[write], "built-in system prompt")
    user = PromptTemplate.load(prompt_file) if prompt_file else PromptTemplate(USER, "built-in prompt")
    columns: list[str] = []
    mailboxes = MailboxRegister()
    companies = lead_companies(input_path, limit, columns, mailboxes, encoding)
    for template in (system, user):  # a missing placeholder stops the run before any request
        template.check([*columns, "research_summary", "domain"], f"the columns of {Path(input_path).name}")
    price = price_for(model, load_prices(prices_file))
    if price is None:
        logger.warning(f"no price for model {model!r}: cost_usd stays empty (give a prices file)")
    llm_key = resolve_secret(llm.key_env or key_env, llm.key_block, f"{provider} API key")
    search_key = search.key("Serper API key")
    writer = LlmSpec(provider, model, llm_key, llm.base_url or "", llm.requests_per_minute, llm.tokens_per_minute,
                     max_tokens or (120 if write == "line" else 400), temperature, price=price,
                     limit_window=llm.limit_window, items_per_request=leads_per_request)
    work_dir = default_work_dir()
    column = f"email_{write}"
    options = RunOptions(chunk_size=chunk_size, runner=runner, workers=workers, total_concurrency=concurrency,
                         encoding=encoding, max_failed_fraction=max_failed_fraction)

    searcher = ApiSpec("search", search.base_url, timeout=30, rate_per_second=search.per_second,
                       secret_headers={"X-API-KEY": search_key})
    research_job = Job("company-research", search_company, ("summary", "sources"), (searcher,), work_dir, "key")
    cache = LookupCache(local_dir(work_dir) / "cache" / "company-research.sqlite", research_max_age_days)
    research = cached_lookup(research_job, companies, cache, options)
    logger.info(f"research: {research['keys']:,} companies, {research['cache_hits']:,} from the cache, "
                f"{research['looked_up']:,} searched, {research['lookups_failed']:,} failed")

    version = hashlib.sha256(repr((writer.provider, writer.model, writer.max_tokens, writer.temperature, system.text,
                                   user.text, column, leads_per_request)).encode()).hexdigest()[:16]
    handler = functools.partial(write_email, system=system, user=user, column=column,
                                repeated_spellings=mailboxes.repeats)
    job = Job("personalised-emails", handler, ("research_summary", "research_key_kind", column, "input_tokens",
              "output_tokens", "cost_usd"), (writer,), work_dir, key_column="email", version=version,
              totals=("input_tokens", "output_tokens", "cost_usd"),
              column_types={"input_tokens": "Int64", "output_tokens": "Int64"},
              hooks=AttachAnswers(cache, research_key_of))
    facts = {"companies": f"{research['keys']:,}", "searches made": f"{research['looked_up'] + research['lookups_failed']:,}",
             "research cache hits": f"{research['cache_hits']:,}", "model": f"{provider} {model}"}
    figures = run_job(job, input_path, output_path, dataclasses.replace(options, limit=limit, required=REQUIRED),
                      facts=facts)
    return {**figures, "research": research}
