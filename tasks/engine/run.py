"""The chunk engine: stage the input in chunks, map one Prefect task per chunk, retry transient
failures in a follow-up pass, and write the output in input order with a run summary.

Every flow calls `run_job(job, input, output, ...)`. The input is streamed into content-addressed
chunk files under the work directory (memory does not grow with the file); each chunk task reads
its own file, so the flow holds only small summaries. See tasks/engine/chunk.py for what runs per chunk.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import re
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger, unmapped
from prefect.futures import as_completed

from tasks.engine.chunk import ChunkRef, Job, process_chunk, read_journal
from tasks.engine.outcomes import CallStats, FatalError
from tasks.engine.progress import Progress, duration, projected_cost, publish_summary, summary_markdown
from tasks.engine.runners import is_dask, make_task_runner, parallel_chunks
from tasks.engine.tables import OutputWriter, count_rows, read_chunks

MAX_CHUNKS = {"thread": 300, "dask": 100}  # a Prefect task costs ~50 ms here (server, cache, result), Dask ~200 ms


def default_work_dir() -> str:
    """Where staged chunks, journals, caches and limiter state live (they hold personal data)."""
    return os.environ.get("BATCHFLOWS_WORK_DIR") or str(Path.home() / ".batchflows")


def effective_chunk_size(requested: int, estimated_rows: int, runner: str) -> int:
    """Grow chunks when a huge input would make too many tasks (memory and overhead per task)."""
    limit = MAX_CHUNKS["dask" if is_dask(runner) else "thread"]
    return max(requested, math.ceil(estimated_rows / limit))


def frame_digest(frame: pd.DataFrame, extra: object = ()) -> str:
    """Content digest of a chunk (values, row numbers, column names) plus anything in `extra`."""
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame.astype(str), index=False).to_numpy().tobytes())
    digest.update(repr((list(frame.columns), extra)).encode())
    return digest.hexdigest()[:24]


def find_duplicates(rows: np.ndarray, hashes: np.ndarray) -> dict[int, int]:
    """Row -> earlier row with the same key hash (64-bit), for every repeat after the first."""
    if len(rows) < 2:
        return {}
    order = np.argsort(hashes, kind="stable")
    sorted_hashes, sorted_rows = hashes[order], rows[order]
    starts = np.r_[True, sorted_hashes[1:] != sorted_hashes[:-1]]
    first = sorted_rows[np.maximum.accumulate(np.where(starts, np.arange(len(starts)), 0))]
    repeat = ~starts
    return dict(zip(sorted_rows[repeat].tolist(), first[repeat].tolist()))


def stage_input(job: Job, input_path: str | Path, chunk_size: int, runner: str = "thread",
                limit: int | None = None, required: tuple[str, ...] = (), sheet: str | None = None,
                encoding: str = "utf-8-sig") -> list[ChunkRef]:
    """Stream the input into chunk files; returns the chunks (in input order) with key duplicates."""
    estimate = count_rows(input_path)
    size = effective_chunk_size(chunk_size, min(estimate, limit or estimate), runner)
    staged_dir = Path(job.work_dir) / "staged"
    staged_dir.mkdir(parents=True, exist_ok=True)
    required = tuple(dict.fromkeys((*required, *((job.key_column,) if job.key_column else ()))))
    chunks, key_rows, key_hashes, seen = [], [], [], 0
    for frame in read_chunks(input_path, size, required=required, sheet=sheet, encoding=encoding):
        if limit is not None:
            frame = frame.iloc[: max(0, limit - seen)]
        if frame.empty and (chunks or seen):  # an empty frame is kept only as a header-only input's chunk
            if limit is not None and seen >= limit:
                break
            continue
        seen += len(frame)
        digest = frame_digest(frame)
        path = staged_dir / f"{digest}.pkl"
        if not path.exists():
            frame.to_pickle(path.with_suffix(".tmp"))
            path.with_suffix(".tmp").replace(path)
        if job.key_column:
            keys = frame[job.key_column].astype(str).str.strip()
            usable = (keys != "") & frame[job.key_column].notna() & (frame["_input_error"] == "")
            key_rows.append(frame["_row"].to_numpy()[usable.to_numpy()])
            key_hashes.append(pd.util.hash_array(keys[usable].to_numpy(dtype=object)))
        first_row = int(frame["_row"].iloc[0]) if len(frame) else 0
        chunks.append(ChunkRef(len(chunks), first_row, len(frame), digest, str(path), source=Path(input_path).name))
    if not key_rows:
        return chunks
    duplicates = find_duplicates(np.concatenate(key_rows), np.concatenate(key_hashes))
    by_chunk: dict[int, list] = {}
    bounds = np.array([c.first_row for c in chunks])
    for row, first in sorted(duplicates.items()):
        by_chunk.setdefault(int(np.searchsorted(bounds, row, side="right") - 1), []).append((row, first))
    return [c if c.index not in by_chunk else  # the duplicates change the chunk's answer: new digest
            ChunkRef(c.index, c.first_row, c.rows, frame_digest(pd.read_pickle(c.staged), by_chunk[c.index]),
                     c.staged, tuple(by_chunk[c.index]), c.source) for c in chunks]


def reason_of(error: str) -> str:
    """Group similar errors: drop row numbers, quoted values and numbers."""
    text = re.sub(r"^[^:]*row \d+( \(line \d+\))?[:,] ?", "", error)
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    return re.sub(r"\d+(\.\d+)?", "N", text)[:120]


def assemble_output(job: Job, chunks: list[ChunkRef], output: str | Path,
                    chunk_errors: dict[int, str]) -> tuple[Counter, Counter, Counter]:
    """Write input columns + result columns + status + error, in input order, one row per input row.
    Returns row counts per status, failure reasons, and the sums of the job's `totals` columns."""
    writer, counts, reasons, sums = OutputWriter(output), Counter(), Counter(), Counter()
    for chunk in chunks:
        frame = pd.read_pickle(chunk.staged)
        records = read_journal(job.journal_path(chunk))
        missing = f"not processed: {chunk_errors.get(chunk.index, 'the chunk did not finish')}"
        results = {name: [] for name in job.result_columns}
        status, errors = [], []
        for number in frame["_row"]:
            record = records.get(number) or {"status": "failed", "error": missing}
            status.append(job.ok_label if record["status"] == "ok" else record["status"])
            errors.append(record.get("error", ""))
            values = record.get("result") or {}
            for name in job.result_columns:
                results[name].append(values.get(name))
            for name in job.totals:
                if isinstance(values.get(name), (int, float)):
                    sums[name] += values[name]
            counts[record["status"]] += 1
            if record["status"] != "ok":
                reasons[reason_of(record["error"])] += 1
        replaced = {*job.result_columns, "status", "error"}  # e.g. an earlier run's output given as input
        out = frame[[c for c in frame.columns if not c.startswith("_") and c not in replaced]].copy()
        for name, values in results.items():  # a declared type holds in every chunk (parquet's schema)
            out[name] = pd.array(values, dtype=job.column_types[name]) if name in job.column_types else values
        out["status"], out["error"] = status, errors
        writer.write(out)
    writer.close()
    return counts, reasons, sums


def exact_rows(input_path: str | Path, sheet: str | None = None, encoding: str = "utf-8-sig") -> int:
    return sum(len(frame) for frame in read_chunks(input_path, 20_000, sheet=sheet, encoding=encoding))


def cost_facts(sums: Counter, rows: int, full_rows: int | None) -> dict[str, str]:
    """Total $, $ per row and, for a --limit run, the projected $ of the whole input."""
    if "cost_usd" not in sums:
        return {}
    per_row = sums["cost_usd"] / rows if rows else 0.0
    facts = {"cost of these rows": f"${sums['cost_usd']:,.4f}", "cost per row": f"${per_row:,.6f}"}
    if full_rows is not None:
        facts[f"projected cost of all {full_rows:,} rows"] = f"${projected_cost(sums['cost_usd'], rows, full_rows):,.2f}"
    return facts


@dataclasses.dataclass
class Tally:
    """What the chunk tasks reported: summaries, failures, this run's HTTP figures."""

    summaries: dict[int, dict] = dataclasses.field(default_factory=dict)
    chunk_errors: dict[int, str] = dataclasses.field(default_factory=dict)
    stats: CallStats = dataclasses.field(default_factory=CallStats)
    workers: Counter = dataclasses.field(default_factory=Counter)
    peak_rss: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)  # worker -> MiB
    cached: int = 0
    passes: int = 0
    fatal: FatalError | None = None

    def take(self, future, index: int, progress: Progress) -> None:
        try:
            summary = future.result()
        except FatalError as error:
            self.fatal = error
            return
        except Exception as error:
            self.chunk_errors[index] = f"{type(error).__name__}: {error}"[:300]
            return
        self.chunk_errors.pop(index, None)
        if future.state.name == "Cached":
            self.cached += 1
            progress.baseline += summary["done"]
        else:
            self.stats.add(summary["stats"])
            self.workers[summary["worker"]] += 1
            seen = self.peak_rss.setdefault(summary["worker"], {})
            for name, mib in summary.get("peak_rss_mb", {}).items():
                seen[name] = max(seen.get(name, 0.0), mib)
        self.summaries[index] = summary
        totals = Counter()
        for done in self.summaries.values():
            totals.update(done.get("totals", {}))
        progress.update(sum(s["done"] for s in self.summaries.values()), totals=totals)

    def unfinished(self, job: Job, chunks: list[ChunkRef]) -> list[ChunkRef]:
        """Chunks to run again: failed, with transient row failures, or cached but journal deleted."""
        return [c for c in chunks if c.index not in self.summaries or self.summaries[c.index]["retryable"]
                or not job.journal_path(c).exists()]


def run_chunks(job: Job, chunks: list[ChunkRef], runner: str, workers: int | None, retry_passes: int,
               progress: Progress) -> Tally:
    """Map the chunk task over the chunks, then follow-up passes for what did not finish."""
    tally = Tally()
    abort_file = Path(job.work_dir) / "aborts" / uuid.uuid4().hex
    abort_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        with make_task_runner(runner, workers) as task_runner:
            pending = chunks
            while pending and tally.passes <= retry_passes and tally.fatal is None:
                tally.passes += 1
                task = process_chunk if tally.passes == 1 else process_chunk.with_options(refresh_cache=True)
                if tally.passes > 1:
                    retryable = sum(tally.summaries.get(c.index, {}).get("retryable", c.rows) for c in pending)
                    progress.logger.info(f"{job.name}: follow-up pass for {retryable:,} rows in {len(pending)} chunks")
                futures = task_runner.map(task, {"chunk": pending, "job": unmapped(job),
                                                 "abort_file": unmapped(str(abort_file))})
                index_of = {id(f): c.index for f, c in zip(futures, pending)}
                for future in as_completed(list(futures)):
                    tally.take(future, index_of[id(future)], progress)
                pending = tally.unfinished(job, chunks)
    finally:
        progress.close()
        abort_file.unlink(missing_ok=True)
    if tally.fatal is not None:
        raise tally.fatal
    return tally


def run_job(job: Job, input_path: str | Path, output_path: str | Path, *, chunk_size: int = 200,
            runner: str = "thread", workers: int | None = None, limit: int | None = None,
            required: tuple[str, ...] = (), sheet: str | None = None, encoding: str = "utf-8-sig",
            retry_passes: int = 1, total_concurrency: int | None = None,
            facts: dict[str, Any] | None = None, projected_rows: int | None = None) -> dict[str, Any]:
    """Run `job` over every row of the input; returns the run's figures (also published as artifact).
    The cost is projected to `projected_rows` (default: all the input's rows when `limit` is given)."""
    logger = get_run_logger()
    started = time.monotonic()
    chunks = stage_input(job, input_path, chunk_size, runner, limit, required, sheet, encoding)
    if total_concurrency:  # the run's concurrency is shared by the chunks running at once
        at_once = max(1, min(parallel_chunks(runner, workers), len(chunks)))
        job = dataclasses.replace(job, concurrency=max(1, math.ceil(total_concurrency / at_once)))
    total_rows = sum(c.rows for c in chunks)
    full_rows = projected_rows or (exact_rows(input_path, sheet, encoding)
                                   if limit is not None and "cost_usd" in job.totals else None)
    staged_at = time.monotonic()
    logger.info(f"{job.name}: {total_rows:,} rows from {input_path} in {len(chunks)} chunks "
                f"(staged in {staged_at - started:.1f} s), runner {runner}, {job.concurrency} rows in flight per chunk")
    progress = Progress(job.name, total_rows, logger, projected_rows=full_rows or total_rows)
    tally = run_chunks(job, chunks, runner, workers, retry_passes, progress)
    processed_at = time.monotonic()
    counts, reasons, sums = assemble_output(job, chunks, output_path, tally.chunk_errors)
    full_rows = full_rows if "cost_usd" in sums else None
    progress.update(total_rows, final=True, totals=sums)
    seconds = time.monotonic() - started
    processed = sum(s.get("processed", 0) for s in tally.summaries.values())
    stats = tally.stats
    figures = {
        "output": str(output_path), "rows": total_rows, "ok": counts["ok"], "partial": counts["partial"],
        "failed": counts["failed"], **{name: round(value, 6) for name, value in sums.items()},
        "chunks": len(chunks), "chunks_cached": tally.cached, "passes": tally.passes,
        "requests": stats.requests, "retries": stats.retries, "http_429": stats.throttled,
        "http_5xx": stats.server_errors, "timeouts": stats.timeouts, "connection_errors": stats.connection_errors,
        "wall_seconds": round(seconds, 2), "rows_per_second": round(total_rows / seconds, 1) if seconds else 0.0,
        "processing_rows_per_second": round(processed / max(processed_at - staged_at, 1e-9), 1),
        "failure_reasons": dict(reasons.most_common(20)), "chunks_per_worker": dict(tally.workers),
        "statuses": dict(counts), "peak_rss_mb": tally.peak_rss,
    }
    if full_rows is not None:
        figures.update(input_rows=full_rows, projected_cost_usd=round(projected_cost(sums["cost_usd"], total_rows, full_rows), 4))
    headline = ", ".join(f"{n:,} {status}" for status, n in counts.items()) + f" of {total_rows:,} rows"
    publish_summary(job.name, summary_markdown(f"{job.name} run summary", {
        "output": f"`{os.path.abspath(output_path)}`", "rows": f"{total_rows:,}", "ok": f"{counts['ok']:,}",
        "partial": f"{counts['partial']:,}", "failed": f"{counts['failed']:,}",
        **{status: f"{n:,}" for status, n in counts.items() if status not in ("ok", "partial", "failed")},
        **(facts or {}),
        **{name.replace("_", " "): f"{value:,}" for name, value in sums.items() if name != "cost_usd"},
        **cost_facts(sums, total_rows, full_rows), "chunks (cached from an earlier run)": f"{len(chunks)} ({tally.cached})",
        "passes": tally.passes, "requests sent": f"{stats.requests:,}", "retries": f"{stats.retries:,}",
        "429 answers": f"{stats.throttled:,}", "5xx answers": f"{stats.server_errors:,}",
        "timeouts": f"{stats.timeouts:,}", "connection errors": f"{stats.connection_errors:,}",
        "throughput": f"{figures['rows_per_second']:,} rows/s", "wall time": duration(seconds),
        "chunks run per worker": ", ".join(f"{w} {n}" for w, n in tally.workers.items()) or "-",
        "peak RSS per worker (its largest child process)": ", ".join(
            f"{w} {r['worker']:,.0f} MiB ({r['children']:,.0f} MiB)" for w, r in tally.peak_rss.items()) or "-",
    }, dict(reasons.most_common(20))), headline)
    logger.info(f"{job.name}: done: {counts['ok']:,} ok, {counts['partial']:,} partial, {counts['failed']:,} failed of {total_rows:,} rows "
                f"in {duration(seconds)}; output {output_path}")
    return figures


def run_job_on_frame(job: Job, frame: pd.DataFrame, **options: Any) -> tuple[dict[str, Any], pd.DataFrame]:
    """`run_job` over an in-memory table (written under the work dir, named by its content, so a
    rerun with the same rows resumes); returns the figures and the output rows in order."""
    folder = Path(job.work_dir) / "frames" / job.name
    folder.mkdir(parents=True, exist_ok=True)
    digest = frame_digest(frame)
    source, output = folder / f"{digest}.csv", folder / f"{digest}.out.jsonl"
    frame.to_csv(source, index=False)
    try:
        figures = run_job(job, source, output, **options)
        return figures, pd.read_json(output, lines=True, dtype=False) if output.stat().st_size else frame.iloc[:0]
    finally:
        source.unlink(missing_ok=True)
        output.unlink(missing_ok=True)
