"""The chunk engine's flow side: stage the input, send chunks to the runner in a sliding window
(their rows travel with the task), take every finished row as it comes and journal it, retry
transient failures in a follow-up pass, and write the output in input order with a run summary.

Every flow calls `run_job(job, input, output, RunOptions(...))`. What must stay consistent (the
journal, the stores behind `job.hooks`) lives here, on the flow side: workers only compute, so a
Dask cluster needs nothing in common with the flow but the network (tasks/engine/channel.py).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import queue
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger

from tasks.engine.channel import ClusterChannel, LocalChannel
from tasks.engine.chunk import ChunkReport, ChunkWork, process_chunk
from tasks.engine.job import Job, Record, RowStatus, RunOptions
from tasks.engine.journal import Journal, assemble_output, needs_work
from tasks.engine.outcomes import CallStats, FatalError, MachineryError
from tasks.engine.progress import (
    Progress,
    duration,
    projected_cost,
    publish_summary,
    summary_markdown,
)
from tasks.engine.runners import is_dask, make_task_runner, parallel_chunks
from tasks.engine.staging import ChunkRef, frame_digest, input_problem, stage_input
from tasks.engine.tables import read_chunks

COLLECT_SECONDS = 0.25  # how often the flow takes finished rows from the channel


def default_work_dir() -> str:
    """The flow side's staged chunks, journals, stores and limiter state (they hold personal data)."""
    return os.environ.get("BATCHFLOWS_WORK_DIR") or str(Path.home() / ".batchflows")


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
    """What the chunks did in this run: executions, failures, HTTP figures, rows finished."""

    reports: list[ChunkReport] = dataclasses.field(default_factory=list)
    chunk_errors: dict[int, str] = dataclasses.field(default_factory=dict)
    stats: CallStats = dataclasses.field(default_factory=CallStats)
    workers: Counter = dataclasses.field(default_factory=Counter)
    peak_rss: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)  # worker -> MiB
    done_before: int = 0  # chunks with nothing left to do when the run began
    passes: int = 0
    rows_done: int = 0
    totals: Counter = dataclasses.field(default_factory=Counter)
    fatal: FatalError | None = None

    def take(self, report: ChunkReport) -> None:
        self.reports.append(report)
        self.stats.add(report.stats)
        self.workers[report.worker] += 1
        seen = self.peak_rss.setdefault(report.worker, {})
        for name, mib in report.peak_rss_mb.items():
            seen[name] = max(seen.get(name, 0.0), mib)

    def count(self, record: Record, totals: tuple[str, ...]) -> None:
        self.rows_done += 1
        for name in totals:
            value = (record.get("result") or {}).get(name)
            if isinstance(value, (int, float)):
                self.totals[name] += value


@dataclasses.dataclass
class InFlight:
    """A chunk sent to the runner: the rows it carries (for the flow-side hooks)."""

    chunk: ChunkRef
    rows: dict[int, dict[str, Any]]


class Dispatcher:
    """Sends chunks in a sliding window (memory stays flat), takes finished rows from the channel."""

    def __init__(self, job: Job, journal: Journal, channel: Any, inbox: Any, progress: Progress, tally: Tally):
        self.job, self.journal, self.channel, self.inbox = job, journal, channel, inbox
        self.progress, self.tally = progress, tally
        self.sent_job = dataclasses.replace(job, hooks=None)  # the hooks and their stores stay here
        self.in_flight: dict[str, InFlight] = {}  # chunk digest ->
        self.finished: queue.SimpleQueue = queue.SimpleQueue()
        self.calls = CallStats()  # as they happen, for the timeline (the run's figures come from the chunk reports)

    def record(self, digest: str, records: list[Record]) -> None:
        """Journal rows answered on the flow side (input problems, known from a store)."""
        self.journal.append(digest, [json.dumps(r, ensure_ascii=False, default=str) for r in records])
        for record in records:
            self.tally.count(record, self.job.totals)

    def prepare(self, chunk: ChunkRef) -> ChunkWork | None:
        """The chunk's rows that still need work; those answered here are journaled at once."""
        records = self.journal.read(chunk.digest)
        frame = chunk.frame()
        frame = frame[[needs_work(records.get(n)) for n in frame["_row"]]]
        if frame.empty:
            return None
        duplicates, answered, rows = dict(chunk.duplicates), [], []
        for row in frame.to_dict("records"):
            problem = input_problem(row, self.job.key_column, duplicates, chunk.source)
            if problem:
                answered.append({"row": row["_row"], "status": RowStatus.FAILED.value, "error": problem,
                                 "retryable": False})
            else:
                rows.append(row)
        if self.job.hooks is not None and rows:
            rows, known = self.job.hooks.prepare(rows)
            answered += known
        self.record(chunk.digest, answered)
        if not rows:
            return None
        self.in_flight[chunk.digest] = InFlight(chunk, {row["_row"]: row for row in rows})
        return ChunkWork(chunk.index, chunk.digest, pd.DataFrame(rows), chunk.source)

    def collect(self) -> None:
        """Journal the rows the channel brought, hand them to the hooks, move the progress."""
        taken = self.inbox.take()
        self.calls.add(taken.calls)
        for digest, lines in taken.lines.items():
            self.journal.append(digest, lines)
            flight = self.in_flight.get(digest)
            for line in lines:
                record = json.loads(line)
                self.tally.count(record, self.job.totals)
                if flight is not None and self.job.hooks is not None and record["row"] in flight.rows:
                    self.job.hooks.finished(flight.rows[record["row"]], record)
        if taken.lines and self.job.hooks is not None:
            self.job.hooks.flush()
        if taken.lines or taken.calls:
            self.progress.update(self.tally.rows_done, totals=self.tally.totals, calls=self.calls)

    def run_pass(self, task_runner: Any, chunks: list[ChunkRef], window: int) -> None:
        pending, futures = iter(chunks), {}
        while True:
            while len(futures) < window and self.tally.fatal is None:
                chunk = next(pending, None)
                if chunk is None:
                    break
                work = self.prepare(chunk)
                if work is None:
                    continue
                future = task_runner.submit(process_chunk, {"chunk": work, "job": self.sent_job, "channel": self.channel})
                futures[id(future)] = (future, chunk)
                future.add_done_callback(lambda f: self.finished.put(id(f)))
            if not futures:
                return
            try:
                done = [self.finished.get(timeout=COLLECT_SECONDS)]
            except queue.Empty:
                done = []
            self.collect()  # after a chunk ends, its last rows are already with the channel
            for key in done:
                future, chunk = futures.pop(key)
                self.settle(future, chunk)

    def settle(self, future: Any, chunk: ChunkRef) -> None:
        try:
            self.tally.take(future.result())
            self.tally.chunk_errors.pop(chunk.index, None)
        except FatalError as error:
            if self.tally.fatal is None:
                self.tally.fatal = error
                self.inbox.abort(str(error))
        except Exception as error:
            self.tally.chunk_errors[chunk.index] = f"{type(error).__name__}: {error}"[:300]
        self.in_flight.pop(chunk.digest, None)
        self.inbox.forget(chunk.digest)


def rows_done(journal: Journal, chunks: list[ChunkRef]) -> dict[int, int]:
    """Chunk index -> its rows with a final record (a chunk with fewer than its rows has work left)."""
    return {chunk.index: sum(not needs_work(r) for r in journal.read(chunk.digest).values()) for chunk in chunks}


def open_channel(job: Job, chunks: list[ChunkRef], options: RunOptions, task_runner: Any) -> tuple[Any, Any]:
    """The channel chunks send their rows through, and the flow's end of it."""
    if not is_dask(options.runner):
        channel = LocalChannel(job.work_dir)
        return channel, channel.inbox()
    run = f"{job.fingerprint}-{frame_digest(pd.DataFrame({'d': [c.digest for c in chunks]}))}"
    channel = ClusterChannel(run)
    return channel, channel.inbox(task_runner.client)


def check_workers(job: Job, options: RunOptions, task_runner: Any) -> None:
    """`job.worker_check` on every worker (on this machine for threads): one line if any says no."""
    if job.worker_check is None:
        return
    answers = task_runner.client.run(job.worker_check) if is_dask(options.runner) else {"here": job.worker_check()}
    problems = sorted({answer for answer in answers.values() if answer})
    if problems:
        raise FatalError(f"{len([a for a in answers.values() if a])} of {len(answers)} workers cannot work: "
                         f"{'; '.join(problems)}")


def run_chunks(job: Job, chunks: list[ChunkRef], options: RunOptions, journal: Journal, progress: Progress) -> Tally:
    """Every chunk with work left, then follow-up passes for rows that failed transiently."""
    tally, done = Tally(), rows_done(journal, chunks)
    pending = [c for c in chunks if done[c.index] < c.rows]
    tally.done_before, tally.rows_done = len(chunks) - len(pending), sum(done.values())
    progress.baseline = tally.rows_done
    if tally.done_before:
        progress.logger.info(f"{job.name}: {tally.done_before} of {len(chunks)} chunks finished in an earlier run; "
                             f"{sum(c.rows for c in chunks) - tally.rows_done:,} rows to go")
    dispatcher = None
    try:
        with make_task_runner(options.runner, options.workers) as task_runner:
            at_once = max(1, min(parallel_chunks(options.runner, options.workers, task_runner), len(chunks)))
            if options.total_concurrency:  # the run's concurrency is shared by the chunks running at once
                job = dataclasses.replace(job, concurrency=max(1, math.ceil(options.total_concurrency / at_once)))
            check_workers(job, options, task_runner)
            channel, inbox = open_channel(job, chunks, options, task_runner)
            dispatcher = Dispatcher(job, journal, channel, inbox, progress, tally)
            try:
                while pending and tally.passes <= options.retry_passes and tally.fatal is None:
                    tally.passes += 1
                    if tally.passes > 1:
                        progress.logger.info(f"{job.name}: follow-up pass for {len(pending)} chunks with rows "
                                             f"that failed transiently")
                    dispatcher.run_pass(task_runner, pending, at_once + 1)
                    done = rows_done(journal, chunks)
                    pending = [c for c in chunks if done[c.index] < c.rows and c.index not in tally.chunk_errors]
            except BaseException:  # Ctrl-C, SIGTERM, an error here: the chunks stop at their next send (0.25 s)
                inbox.abort("the flow run stopped")
                raise
            finally:
                dispatcher.collect()
                inbox.close()
    finally:
        if dispatcher is not None and not is_dask(options.runner):
            dispatcher.collect()  # what the chunk threads sent while they stopped (the runner waited for them)
        progress.close()
    return tally


def run_job(job: Job, input_path: str | Path, output_path: str | Path, options: RunOptions = RunOptions(),
            facts: dict[str, Any] | None = None, projected_rows: int | None = None) -> dict[str, Any]:
    """Run `job` over every row of the input; returns the run's figures (also published as artifact).
    The cost is projected to `projected_rows` (default: all the input's rows when `limit` is given).
    A fatal error, or a chunk that failed for a reason that is not a row's, fails the run loudly
    after the output is written (its rows say `not processed`)."""
    logger = get_run_logger()
    started = time.monotonic()
    chunks = stage_input(job, input_path, options)
    total_rows = sum(c.rows for c in chunks)
    full_rows = projected_rows or (exact_rows(input_path, options.sheet, options.encoding)
                                   if options.limit is not None and "cost_usd" in job.totals else None)
    staged_at = time.monotonic()
    logger.info(f"{job.name}: {total_rows:,} rows from {input_path} in {len(chunks)} chunks "
                f"(staged in {staged_at - started:.1f} s), runner {options.runner}")
    limits = [rate for resource in job.resources if (rate := getattr(resource, "row_rate_limit", None))]
    progress = Progress(job.name, total_rows, logger, projected_rows=full_rows or total_rows,
                        limit_per_second=min(limits, default=None))
    journal = Journal(job)
    tally = run_chunks(job, chunks, options, journal, progress)
    processed_at = time.monotonic()
    counts, reasons, sums = assemble_output(job, journal, chunks, output_path, tally.chunk_errors,
                                           str(tally.fatal or "the chunk did not finish"))
    full_rows = full_rows if "cost_usd" in sums else None
    progress.update(total_rows, final=True, totals=sums)
    seconds = time.monotonic() - started
    processed = sum(report.processed for report in tally.reports)
    stats = tally.stats
    figures = {
        "output": str(output_path), "rows": total_rows, "ok": counts["ok"], "partial": counts["partial"],
        "failed": counts["failed"], **{name: round(value, 6) for name, value in sums.items()},
        "chunks": len(chunks), "chunks_done_before": tally.done_before, "passes": tally.passes,
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
        **cost_facts(sums, total_rows, full_rows), "chunks (done in an earlier run)": f"{len(chunks)} ({tally.done_before})",
        "passes": tally.passes, "requests sent": f"{stats.requests:,}", "retries": f"{stats.retries:,}",
        "429 answers": f"{stats.throttled:,}", "5xx answers": f"{stats.server_errors:,}",
        "timeouts": f"{stats.timeouts:,}", "connection errors": f"{stats.connection_errors:,}",
        "throughput": f"{figures['rows_per_second']:,} rows/s", "wall time": duration(seconds),
        "chunks run per worker": ", ".join(f"{w} {n}" for w, n in tally.workers.items()) or "-",
        "peak RSS per worker (its largest child process)": ", ".join(
            f"{w} {r['worker']:,.0f} MiB ({r['children']:,.0f} MiB)" for w, r in tally.peak_rss.items()) or "-",
    }, dict(reasons.most_common(20)), progress.timeline()), headline)
    logger.info(f"{job.name}: done: {counts['ok']:,} ok, {counts['partial']:,} partial, {counts['failed']:,} failed of {total_rows:,} rows "
                f"in {duration(seconds)}; output {output_path}")
    if tally.fatal is not None:
        raise tally.fatal
    if tally.chunk_errors:
        index, error = next(iter(tally.chunk_errors.items()))
        raise MachineryError(f"{len(tally.chunk_errors)} chunk(s) failed, not for a reason of their rows "
                             f"(chunk {index}: {error}); the output says which rows were not processed")
    return figures




def run_job_on_frame(job: Job, frame: pd.DataFrame, options: RunOptions) -> tuple[dict[str, Any], pd.DataFrame]:
    """`run_job` over an in-memory table (written under the work dir, named by its content, so a
    rerun with the same rows resumes); returns the figures and the output rows in order."""
    folder = Path(job.work_dir) / "frames" / job.name
    folder.mkdir(parents=True, exist_ok=True)
    digest = frame_digest(frame)
    source, output = folder / f"{digest}.csv", folder / f"{digest}.out.jsonl"
    frame.to_csv(source, index=False)
    try:
        figures = run_job(job, source, output, options)
        return figures, pd.read_json(output, lines=True, dtype=False) if output.stat().st_size else frame.iloc[:0]
    finally:
        source.unlink(missing_ok=True)
        output.unlink(missing_ok=True)
