"""Book requests: check each request's phone and address, find duplicates against the history and
within the batch, and send one confirmation message per accepted request, exactly once.

Outputs in OUTDIR (a folder, or a URL such as s3://bucket/books/): accepted.csv, rejected.csv (with
every reason), duplicates.csv (pairs with scores and the matched history id) and messages.csv (status
and provider id, or `dry-run`). The duplicate model stays on local disk.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
from prefect import flow, get_run_logger, task
from pydantic import Field

from tasks.apis.dedupe import DedupeRun, check_history_columns, find_duplicates
from tasks.apis.endpoints import GeocodingEndpoint, MessagingEndpoint
from tasks.apis.geocoding import RESULT_COLUMNS as GEO_COLUMNS
from tasks.apis.geocoding import address_key, geocode, status_of
from tasks.apis.http import ApiSpec, RetryPolicy
from tasks.apis.llm import PromptTemplate
from tasks.apis.messaging import RESULT_COLUMNS as MESSAGE_COLUMNS
from tasks.apis.messaging import OutboxHooks, idempotency_key, is_email, send_message
from tasks.apis.phones import check_phones, fast_e164
from tasks.engine import storage
from tasks.engine.job import Job, RunOptions
from tasks.engine.lookups import LookupCache, cached_lookup
from tasks.engine.params import (
    ChunkSize,
    Cli,
    Concurrency,
    Emulate,
    Encoding,
    Help,
    InputFile,
    Runner,
    Workers,
)
from tasks.engine.preflight import check_paths
from tasks.engine.progress import publish_summary, summary_markdown
from tasks.engine.run import default_work_dir, run_job_on_frame
from tasks.engine.storage import local_dir
from tasks.engine.tables import InputError, OutputWriter, read_chunks
from tasks.samples.emulated import run_emulated

REQUIRED = ("name", "phone", "address")
TEMPLATE = ("Hi {name}, we received your request for \"{book}\". We will send it to {formatted_address}. "
            "Reference {request_id}.")


def read_all(path: str, required: tuple[str, ...] = (), encoding: str = "utf-8-sig") -> pd.DataFrame:
    return pd.concat(list(read_chunks(path, 50_000, required=required, encoding=encoding)), ignore_index=True)


@task(name="check-phones")
def phones_step(requests: pd.DataFrame, region: str) -> pd.DataFrame:
    return check_phones(requests["phone"], region)


@task(name="find-duplicates")
def duplicates_step(candidates: pd.DataFrame, history_path: str, threshold: float, region: str,
                    model_path: str, cache_dir: str, encoding: str) -> pd.DataFrame:
    """Pairs with match probability >= threshold; the model at model_path is reused, or trained and saved
    there when absent. Addresses are read for the `country` column, else the phone's region, else `region`.
    The parsed history is kept in cache_dir for the next run with the same history."""
    history = read_all(history_path, encoding=encoding)
    history["phone_e164"] = fast_e164(history.get("phone", pd.Series("", index=history.index)), region)
    run = DedupeRun()
    pairs = find_duplicates(candidates, history, threshold, model_path=Path(model_path), country=region, run=run,
                            cache_dir=Path(cache_dir))
    get_run_logger().info(f"duplicates: model {'trained and saved to' if run.trained else 'reused from'} "
                          f"{run.model_path}; {run.duplicate_rows:,} duplicate rows")
    return pairs


def request_ids(requests: pd.DataFrame) -> pd.Series:
    """The input's request_id, else a digest of the row (stable across reruns)."""
    if "request_id" in requests and requests["request_id"].astype(str).str.strip().ne("").all():
        return requests["request_id"].astype(str)
    text = requests[[c for c in requests.columns if not c.startswith("_")]].astype(str).agg("\x1f".join, axis=1)
    return "R" + text.map(lambda t: hashlib.sha256(t.encode()).hexdigest()[:12])


def check_addresses(requests: pd.DataFrame, reasons: dict[int, list[str]], job: Job,
                    options: RunOptions) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Geocode each distinct address of the rows still acceptable (cached); add reasons and columns."""
    keys = requests["address"].map(address_key)
    requests = requests.assign(address_key=keys.str[0])
    open_rows = ~requests.index.isin(list(reasons)) & (requests["address_key"] != "")  # no paid call for a rejected row
    wanted = requests.loc[open_rows, ["address_key", "address"]].drop_duplicates("address_key")
    cache = LookupCache(job.local_dir / "cache" / "geocoding.sqlite", max_age_days=90)
    figures = cached_lookup(job, wanted.rename(columns={"address_key": "key"}), cache, options)
    answers = cache.get(requests["address_key"].tolist())
    for i, (address, problem) in keys.items():
        found = answers.get(address)
        if problem:
            reasons.setdefault(i, []).append(f"invalid address: {problem}")
        elif i in reasons:
            continue
        elif found is None:
            reasons.setdefault(i, []).append(f"address check failed: {cache.failure(address) or 'not done'}")
        elif not found["found"]:
            reasons.setdefault(i, []).append("address not found")
    found = pd.DataFrame([answers.get(k) or {} for k in requests["address_key"]], index=requests.index)
    return requests.join(found.reindex(columns=list(GEO_COLUMNS))), figures


def render_messages(accepted: pd.DataFrame, template: PromptTemplate, channel: str) -> pd.DataFrame:
    """One message per accepted request, keyed by request id + template version."""
    version = hashlib.sha256(template.text.encode()).hexdigest()[:8]
    return pd.DataFrame({
        "request_id": accepted["request_id"], "channel": channel,
        "to": accepted["email"].str.strip() if channel == "email" else accepted["phone_e164"],
        "body": [template.render(r) for r in accepted.to_dict("records")],
        "idempotency_key": [idempotency_key(r, version) for r in accepted["request_id"]],
    })


@flow(name="book-requests")
def book_requests(
    input_path: Annotated[InputFile, Help("request list with name, phone, address (book, date, request_id)")],
    history_path: Annotated[InputFile, Help("past requests with request_id, name, address (phone)"),
                            Cli(("--history",))],
    output_dir: Annotated[str, Field(min_length=1), Help("output folder (or s3://, gs:// URL) for "
                                                         "accepted/rejected/duplicates/messages.csv"),
                          Cli(("-o", "--output"))],
    default_region: Annotated[str, Field(pattern=r"^[A-Za-z]{2}$"),
                              Help("region of numbers without a country code (ISO 3166 code)")] = "US",
    send: Annotated[bool, Help("send the confirmation messages (without: render them only)")] = False,
    dedupe_threshold: Annotated[float, Field(gt=0, lt=1), Help("match probability from which a pair is a "
                                                               "duplicate")] = 0.9,
    dedupe_model: Annotated[str | None, Help("duplicate model (Splink JSON) to reuse; trained and written there "
                                             "when absent (a local path; default: OUTDIR/dedupe_model.json, or "
                                             "for an OUTDIR URL its local folder, see BATCHFLOWS_LOCAL_DIR)")] = None,
    runner: Runner = "thread",
    workers: Workers = None,
    concurrency: Concurrency = 50,
    chunk_size: ChunkSize = 200,
    channel: Annotated[Literal["sms", "email"], Help("message channel (email: to the email column)")] = "sms",
    template_file: Annotated[str | None, Help("message template with {name}, {book}, {formatted_address} ... "
                                              "(default: the built-in one)")] = None,
    geocoding: GeocodingEndpoint = GeocodingEndpoint(),
    messaging: MessagingEndpoint = MessagingEndpoint(),
    encoding: Encoding = "utf-8-sig",
    emulate: Emulate = False,
) -> dict[str, Any]:
    """Validate, dedupe and confirm a batch of book requests; write the four CSVs to `output_dir`."""
    if emulate:
        return run_emulated(book_requests, locals())
    check_paths(inputs=(input_path, history_path), folders=(output_dir,), files=(template_file,))
    geocoding_key = geocoding.key("Google Maps API key")
    messaging_key = messaging.key("messaging API key") if send else None
    logger, timings, started = get_run_logger(), {}, time.monotonic()
    if dedupe_model and storage.is_url(dedupe_model):
        raise InputError(f"{dedupe_model}: the duplicate model must be a local path")
    out_dir, work_dir = output_dir if storage.is_url(output_dir) else storage.local(output_dir), default_work_dir()
    model_dir = local_dir(out_dir)  # the folder itself, or for a URL its local mirror
    model_dir.mkdir(parents=True, exist_ok=True)
    template = PromptTemplate.load(template_file) if template_file else PromptTemplate(TEMPLATE, "built-in template")
    options = RunOptions(chunk_size=chunk_size, runner=runner, workers=workers, total_concurrency=concurrency,
                         encoding=encoding)
    check_history_columns(list(next(read_chunks(history_path, 1, encoding=encoding)).columns), history_path)
    requests = read_all(input_path, REQUIRED, encoding)
    template.check([*requests.columns, "request_id", *GEO_COLUMNS, "phone_e164"], f"the columns of {Path(input_path).name}")
    requests["request_id"] = request_ids(requests)
    reasons: dict[int, list[str]] = {i: [e] for i, e in requests["_input_error"].items() if e}
    timings["read"] = time.monotonic() - started

    step = time.monotonic()
    requests = requests.join(phones_step(requests, default_region))
    for i, error in requests["phone_error"].items():
        if error:
            reasons.setdefault(i, []).append(f"invalid phone: {error}")
    if channel == "email":  # messages go to the `email` column
        if "email" not in requests:
            raise ValueError(f"{input_path}: --channel email needs an 'email' column")
        for i, email in requests["email"].items():
            if not is_email(str(email).strip()):
                reasons.setdefault(i, []).append(f"invalid email: {str(email)[:60]!r}")
    timings["phones"] = time.monotonic() - step

    step = time.monotonic()
    geo = ApiSpec("geocoding", geocoding.base_url, rate_per_second=geocoding.per_second,
                  secret_params={"key": geocoding_key}, status_of=status_of)
    requests, geocoding = check_addresses(requests, reasons, Job("geocoding", geocode, GEO_COLUMNS, (geo,), work_dir,
                                                                 key_column="key"), options)
    timings["addresses"] = time.monotonic() - step

    step = time.monotonic()
    valid = requests[~requests.index.isin(list(reasons))]
    pairs = duplicates_step(valid, history_path, dedupe_threshold, default_region,
                            dedupe_model or str(model_dir / "dedupe_model.json"), str(local_dir(work_dir) / "dedupe"), encoding)
    best = pairs[pairs["best"]].set_index("row")["reason"]
    for i, row in valid["_row"].items():
        if row in best.index:
            reasons.setdefault(i, []).append(best[row])
    timings["duplicates"] = time.monotonic() - step

    step = time.monotonic()
    accepted = requests[~requests.index.isin(list(reasons))].copy()
    messages = render_messages(accepted, template, channel)
    if send and len(messages):
        provider = ApiSpec("messaging", messaging.base_url, rate_per_second=messaging.per_second,
                           secret_headers={"Authorization": messaging_key.bearer()}, retry=RetryPolicy(max_attempts=1))
        job = Job("book-messages", send_message, MESSAGE_COLUMNS, (provider,), work_dir, key_column="idempotency_key",
                  hooks=OutboxHooks(local_dir(work_dir) / "outbox" / "messages.sqlite"))
        _, messages = run_job_on_frame(job, messages, options)
        messages["status"] = messages["status"].replace({"ok": "sent"})
    else:
        messages = messages.assign(status="dry-run", message_status="", provider_id="", error="")
    timings["messages"] = time.monotonic() - step

    columns = [c for c in requests.columns if not c.startswith("_") and c not in ("address_key", "phone_error")]
    rejected = requests[requests.index.isin(list(reasons))][columns].copy()
    rejected["reasons"] = ["; ".join(reasons[i]) for i in rejected.index]
    for name, frame in (("accepted", accepted[columns]), ("rejected", rejected), ("duplicates", pairs),
                        ("messages", messages)):
        writer = OutputWriter(storage.join(out_dir, f"{name}.csv"))
        writer.write(frame)
        writer.close()
    figures = _summarise(requests, accepted, rejected, pairs, messages, geocoding, timings, out_dir, started)
    logger.info(f"book-requests: {figures['accepted']:,} accepted, {figures['rejected']:,} rejected of "
                f"{figures['requests']:,}; outputs in {out_dir}")
    return figures


def reason_kind(reason: str) -> str:
    """'duplicate of history request H12 (...)' -> 'duplicate of a past request', 'invalid phone: …' -> 'invalid phone'."""
    if reason.startswith("duplicate of"):
        return "duplicate of a past request" if "history" in reason else "duplicate within the batch"
    head = reason.split(":")[0]
    return "unreadable row" if " row " in head else head


def _summarise(requests, accepted, rejected, pairs, messages, geocoding, timings, out_dir, started) -> dict[str, Any]:
    by_reason = rejected["reasons"].str.split("; ").explode().map(reason_kind).value_counts()
    sent = messages["status"].value_counts().to_dict() if len(messages) else {}
    figures = {"requests": len(requests), "accepted": len(accepted), "rejected": len(rejected),
               "duplicate_pairs": len(pairs), "messages": sent, "reasons": by_reason.to_dict(),
               "geocoding": geocoding, "timings": {k: round(v, 2) for k, v in timings.items()},
               "wall_seconds": round(time.monotonic() - started, 2), "output_dir": str(out_dir)}
    facts = {"requests": f"{len(requests):,}", "accepted": f"{len(accepted):,}", "rejected": f"{len(rejected):,}",
             "duplicate pairs": f"{len(pairs):,}", "messages": ", ".join(f"{k} {v:,}" for k, v in sent.items()) or "-",
             "addresses looked up (cache hits)": f"{geocoding['looked_up']:,} ({geocoding['cache_hits']:,})",
             **{f"time: {k}": f"{v:.1f} s" for k, v in timings.items()},
             "throughput": f"{len(requests) / max(figures['wall_seconds'], 0.01):,.1f} requests/s",
             "API requests, retries, 429s": "see the geocoding-summary and book-messages-summary artifacts",
             "outputs": f"`{storage.shown(out_dir)}`"}
    publish_summary("book-requests", summary_markdown("book-requests run summary", facts, by_reason.to_dict()),
                    f"{len(accepted):,} accepted, {len(rejected):,} rejected of {len(requests):,} requests")
    return figures
