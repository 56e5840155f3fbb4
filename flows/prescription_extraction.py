"""Prescription extraction: list a Google Drive folder of PDFs, download each, read its fields with
Claude (a Messages call per file, or the Message Batches API at half the price), and write one JSON
object per file in listing order with its status, fields, token usage and $ cost, plus a CSV of the
failed files that `--files` runs again.

Statuses: `success`; `partial` (read, but required fields missing or illegible); `failed` (not a PDF,
empty, too large, unreadable, or the API gave up: see `error`; transient failures are retried on rerun).
"""
from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
from prefect import flow, get_run_logger, task
from pydantic import AfterValidator, Field

from tasks.apis.batches import (
    BATCH_DISCOUNT,
    CREATE_ROUNDS,
    RESUBMIT,
    BatchSpec,
    NotSubmitted,
    failure_kind,
)
from tasks.apis.drive import DriveSpec, download_path, safe_name
from tasks.apis.endpoints import AnthropicEndpoint, DriveEndpoint, PricesFile
from tasks.apis.extraction import (
    SYSTEM,
    TOOL,
    estimate_tokens,
    interpret,
    request_params,
)
from tasks.apis.llm import LlmSpec, load_prices, price_for
from tasks.engine.job import Job, RunOptions
from tasks.engine.lookups import LookupCache, RememberAnswers
from tasks.engine.outcomes import (
    Braked,
    Failed,
    FatalError,
    Partial,
    RowError,
    TooManyFailed,
)
from tasks.engine.params import (
    ChunkSize,
    Cli,
    Concurrency,
    Emulate,
    FailedFraction,
    Help,
    Limit,
    Positive,
    Rate,
    Runner,
    Workers,
)
from tasks.engine.preflight import check_paths
from tasks.engine.ratelimit import FileLimits
from tasks.engine.run import default_work_dir, run_job
from tasks.engine.storage import local_dir
from tasks.engine.tables import read_chunks
from tasks.samples.emulated import run_emulated

LISTED = ("id", "name", "path", "size", "md5Checksum", "modifiedTime")
TOKENS = ("input_tokens", "output_tokens", "cache_write_tokens", "cache_read_tokens")
RESULTS = ("fields", *TOKENS, "cost_usd")
COLUMN_TYPES = dict.fromkeys(TOKENS, "Int64")  # token counts stay integers in every output format
MAX_PDF_BYTES = (32 << 20) * 3 // 4 - (64 << 10)  # a Messages request holds 32 MB; base64 adds a third


async def fetch_pdf(row: dict[str, Any], drive, downloads: str, max_bytes: int) -> Path:
    """The file downloaded to `downloads` (once), after the checks that need no API call."""
    size = int(row.get("size") or 0)
    if size == 0:
        raise RowError("empty file (0 bytes)")
    if size > max_bytes:
        raise RowError(f"the PDF is {size / 1e6:.1f} MB; a Claude request takes a PDF of at most "
                       f"{max_bytes / 1e6:.1f} MB (32 MB after base64)")
    path = await drive.download(row, Path(downloads))
    with open(path, "rb") as handle:
        head = handle.read(1024)
    if b"%PDF-" not in head:
        path.unlink(missing_ok=True)
        raise RowError(f"not a PDF: the file starts with {head[:8]!r}")
    return path


def outcome(message, cost: float | None, **extra: Any) -> dict[str, Any] | Partial:
    """A Messages answer as the row's result (status from `interpret`), with its usage, cost and `extra`."""
    status, fields, error = interpret(message)
    usage = message.usage
    result = {**extra, "fields": fields, "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
              "cache_write_tokens": usage.cache_creation_input_tokens or 0,
              "cache_read_tokens": usage.cache_read_input_tokens or 0, "cost_usd": cost}
    return {"success": result, "partial": Partial(result, error)}.get(status) or Failed(result, error)


async def delete_when_final(path: Path, work):
    """Await `work`; the download is deleted once the file has its final answer (kept for a rerun
    while the failure is transient)."""
    try:
        answer = await work
    except RowError as error:
        if not error.retryable:
            path.unlink(missing_ok=True)
        raise
    path.unlink(missing_ok=True)
    return answer


async def extract_file(row: dict[str, Any], clients: dict, *, downloads: str, max_tokens: int,
                       max_bytes: int) -> dict[str, Any] | Partial:
    """Realtime handler: download, one Messages call with the PDF, validated fields. (A file extracted
    with success before, with the same id, md5 and settings, is answered on the flow side.)"""
    path = await fetch_pdf(row, clients["drive"], downloads, max_bytes)
    llm = clients["llm"]
    tokens = await asyncio.to_thread(estimate_tokens, path, max_tokens)
    params = await asyncio.to_thread(request_params, path, max_tokens)
    message = await delete_when_final(path, llm.message(params, tokens, SYSTEM))
    return outcome(message, llm.cost(message.usage))


def file_key(row: dict[str, Any], version: str) -> str:
    """The same file (Drive id + md5) under the same settings gets the same key."""
    return hashlib.sha256(f"{row['id']}\0{row.get('md5Checksum')}\0{version}".encode()).hexdigest()[:40]


def custom_id(row: dict[str, Any], version: str, attempt: int) -> str:
    """A batch request's id."""
    return f"{file_key(row, version)}-{attempt}"


async def submit_file(row: dict[str, Any], clients: dict, *, downloads: str, max_tokens: int, max_bytes: int,
                      version: str) -> dict[str, Any]:
    """Batch handler, first pass: download and add the request to a batch; returns its batch id."""
    return {"batch_id": await submit_request(row, clients, custom_id(row, version, 1), downloads, max_tokens,
                                             max_bytes)}


async def submit_request(row: dict[str, Any], clients: dict, request: str, downloads: str, max_tokens: int,
                         max_bytes: int) -> str:
    """Download the file and queue its request for the chunk's next batch; returns the batch id. A
    request submitted before (e.g. by a killed run) is neither downloaded nor submitted again."""
    batches = clients["batches"]
    known = await batches.submitted(request)
    if known:
        return known
    async with batches.member():
        path = await fetch_pdf(row, clients["drive"], downloads, max_bytes)
        params = await asyncio.to_thread(request_params, path, max_tokens)
        return await batches.submit(request, params, SYSTEM)


async def collect_file(row: dict[str, Any], clients: dict, *, downloads: str, max_tokens: int, max_bytes: int,
                       version: str) -> dict[str, Any] | Partial:
    """Batch handler, second pass: the file's result and the batch that answered it; an errored or
    expired request is submitted once more."""
    if row.get("status") == "failed":
        raise RowError(row.get("error") or "not submitted")
    batches = clients["batches"]
    for attempt in (1, 2):
        request = custom_id(row, version, attempt)
        batch_id, result = await answer_of(row, clients, request, downloads, max_tokens, max_bytes)
        kind = failure_kind(result)
        if kind not in RESUBMIT:
            break
    download_path(row, Path(downloads)).unlink(missing_ok=True)  # the file has its final answer
    if kind != "succeeded":
        detail = getattr(getattr(getattr(result, "error", None), "error", None), "message", "")
        return Failed({"batch_id": batch_id}, f"batch request {kind}{f': {detail}' if detail else ''}"
                                              f"{' (after one resubmission)' if attempt == 2 else ''}")
    cost = batches.llm.cost(result.message.usage)
    return outcome(result.message, None if cost is None else round(cost * BATCH_DISCOUNT, 8), batch_id=batch_id)


async def answer_of(row: dict[str, Any], clients: dict, request: str, downloads: str, max_tokens: int,
                    max_bytes: int) -> tuple[str, Any]:
    """The batch that holds the request and its result; submitted (again) when no batch holds it
    (a killed run's create that never reached the API)."""
    batches = clients["batches"]
    for _ in range(CREATE_ROUNDS):
        await submit_request(row, clients, request, downloads, max_tokens, max_bytes)
        try:
            result = await batches.result(request)
        except NotSubmitted:
            continue
        return await batches.submitted(request), result
    raise RowError(f"batch request {request} was found in no batch {CREATE_ROUNDS} times", retryable=True)


@task(name="list-drive-folder", retries=2, retry_delay_seconds=5,
      retry_condition_fn=lambda task, run, state: not isinstance(state.result(raise_on_failure=False), FatalError))
def list_folder(drive: DriveSpec, folder_id: str, recursive: bool, listing: str, work_dir: str,
                only: list[str] | None = None) -> int:
    """Write the folder's PDFs (paged listing, sub-folders when asked) to `listing` as JSON lines;
    with `only`, just those file ids. Returns the number of files."""
    async def go() -> list[dict]:
        client = drive.client(1, FileLimits(str(local_dir(work_dir))))
        async with client:
            await client.check_folder(folder_id)
            files = await client.list_folder(folder_id, recursive=recursive)
        client.close()
        return files

    files, seen = asyncio.run(go()), set()
    wanted = set(only) if only is not None else None
    Path(listing).parent.mkdir(parents=True, exist_ok=True)
    with open(listing, "w", encoding="utf-8") as handle:
        for file in files:
            if file["id"] in seen or (wanted is not None and file["id"] not in wanted):
                continue  # a file in two listed folders is done once
            seen.add(file["id"])
            handle.write(json.dumps({name: file.get(name) for name in LISTED}, ensure_ascii=False) + "\n")
    return len(seen)


def failed_files(output_path: str | Path, target: str | Path | None = None, include_partial: bool = False) -> Path:
    """Write the failed (and, when asked, partial) files of an output to a CSV that `files` takes."""
    target = Path(target or Path(output_path).with_suffix(".failed.csv"))
    statuses = {"failed", "partial"} if include_partial else {"failed"}
    columns = ["id", "name", "path", "status", "error"]
    frames = [pd.DataFrame(columns=columns)]
    if Path(output_path).stat().st_size:
        frames += [f[f["status"].isin(statuses)][columns] for f in read_chunks(output_path, 20_000, required=columns)]
    pd.concat(frames).to_csv(target, index=False)
    return target


def jsonl_path(path: str) -> str:
    if not path.lower().endswith((".jsonl", ".ndjson")):
        raise ValueError("the output is JSON lines: give a .jsonl file")
    return path


def file_ids(path: str) -> list[str]:
    return [i for f in read_chunks(path, 20_000, required=("id",)) for i in f["id"].astype(str)]


@flow(name="prescription-extraction")
def prescription_extraction(
    folder_id: Annotated[str, Field(min_length=1), Help("the Drive folder's id (with emulate: a local folder)"),
                         Cli(("--folder-id",))],
    output_path: Annotated[str, AfterValidator(jsonl_path), Help("JSON lines output; failed files also go to "
                                                                 "<stem>.failed.csv next to it"), Cli(("-o", "--output"))],
    mode: Annotated[Literal["realtime", "batch"], Help("a Messages call per file, or the Message Batches API "
                                                        "(half the price, results within 24 h)")] = "realtime",
    limit: Limit = None,
    model: Annotated[str, Field(min_length=1), Help("Claude model")] = "claude-sonnet-5",
    recursive: Annotated[bool, Help("also the PDFs of sub-folders")] = False,
    files: Annotated[str | None, Help("CSV with an id column (e.g. <stem>.failed.csv): only these files")] = None,
    runner: Runner = "thread",
    workers: Workers = None,
    concurrency: Concurrency = 8,
    chunk_size: ChunkSize = 100,
    max_tokens: Annotated[Positive, Help("per answer")] = 1500,
    drive: DriveEndpoint = DriveEndpoint(),
    anthropic: AnthropicEndpoint = AnthropicEndpoint(),
    prices_file: Annotated[PricesFile, Cli(("--prices",))] = None,
    poll_seconds: Annotated[Rate, Help("batch mode: how often a batch is polled (as Anthropic's guide)")] = (
        BatchSpec.poll_seconds),
    max_pdf_bytes: Annotated[Positive, Help("larger PDFs fail without a call (a Messages request holds 32 MB "
                                            "after base64)")] = MAX_PDF_BYTES,
    claude_timeout: Annotated[Rate, Help("seconds per Claude call")] = 300,
    max_failed_fraction: FailedFraction = 0.5,
    emulate: Emulate = False,
) -> dict[str, Any]:
    """Extract every PDF of the folder (or the `files` list) into `output_path` (JSON lines)."""
    if emulate:
        return run_emulated(prescription_extraction, locals())
    check_paths(inputs=[files] if files else (), outputs=(output_path,))
    key = anthropic.key("Anthropic API key")
    logger, work_dir = get_run_logger(), default_work_dir()
    folder = local_dir(work_dir) / "prescriptions" / safe_name("folder", folder_id)
    drive = drive.spec()
    only = file_ids(files) if files else None
    name = "listing" if only is None else "listing-" + hashlib.sha256("\n".join(only).encode()).hexdigest()[:12]
    listing = str(folder / f"{name}.jsonl")
    listed = list_folder(drive, folder_id, recursive, listing, work_dir, only)
    if not listed:
        raise ValueError(f"Drive folder {folder_id} has no PDF files" + (f" with the ids in {files}" if files else ""))
    logger.info(f"folder {folder_id}: {listed:,} PDF files{' (from ' + files + ')' if files else ''}")

    price = price_for(model, load_prices(prices_file))
    if price is None:
        logger.warning(f"no price for model {model!r}: cost_usd stays empty (give a prices file)")
    llm = LlmSpec("anthropic", model, key, anthropic.base_url or "", anthropic.requests_per_minute,
                  anthropic.tokens_per_minute, max_tokens, price=price, timeout=claude_timeout,
                  limit_window=anthropic.limit_window)
    version = hashlib.sha256(repr((model, max_tokens, SYSTEM, TOOL)).encode()).hexdigest()[:16]
    settings = {"downloads": str(folder / "downloads"), "max_tokens": max_tokens, "max_bytes": max_pdf_bytes}
    options = RunOptions(chunk_size=chunk_size, runner=runner, workers=workers, total_concurrency=concurrency,
                         max_failed_fraction=max_failed_fraction)
    facts = {"folder": f"`{folder_id}`", "files listed": f"{listed:,}", "model": model, "mode": mode}
    common = {"key_column": "id", "work_dir": work_dir, "version": version, "ok_label": "success"}
    try:
        if mode == "realtime":
            extracted = LookupCache(local_dir(work_dir) / "cache" / "prescriptions-extracted.sqlite")
            job = Job("prescription-extraction", functools.partial(extract_file, **settings), RESULTS, (drive, llm),
                      totals=RESULTS[1:], column_types=COLUMN_TYPES,
                      hooks=RememberAnswers(extracted, functools.partial(file_key, version=version)), **common)
            figures = run_job(job, listing, output_path, dataclasses.replace(options, limit=limit), facts=facts)
        else:
            batches = BatchSpec(llm, str(local_dir(work_dir) / "cache" / "message-batches.sqlite"), poll_seconds=poll_seconds)
            submit = Job("prescriptions-submit", functools.partial(submit_file, version=version, **settings),
                         ("batch_id",), (drive, batches), concurrency=chunk_size, **common)
            submitted = str(folder / f"{name}-submitted-{version}.jsonl")
            run_job(submit, listing, submitted, dataclasses.replace(options, limit=limit, total_concurrency=None))
            collect = Job("prescription-extraction", functools.partial(collect_file, version=version, **settings),
                          ("batch_id", *RESULTS), (drive, batches), concurrency=chunk_size, totals=RESULTS[1:],
                          column_types=COLUMN_TYPES, **common)
            figures = run_job(collect, submitted, output_path, dataclasses.replace(options, total_concurrency=None),
                              facts=facts, projected_rows=listed if limit else None)
    except (Braked, TooManyFailed):  # the output is written: its failed files are exported all the same
        failed_files(output_path)
        raise
    figures["failed_files"] = str(failed_files(output_path))
    return {**figures, "files_listed": listed}
