"""The chunk engine's flow side: stage the input, send chunks to the runner in a sliding window
(their rows travel with the task; tasks/engine/dispatch.py), take every finished row as it comes and
journal it, retry transient failures in a follow-up pass, stop on systematic failure (the brake),
and write the output in input order with a run summary.

Every flow calls `run_job(job, input, output, RunOptions(...))`. What must stay consistent (the
journal, the stores behind `job.hooks`) lives here, on the flow side: workers only compute, so a
Dask cluster needs nothing in common with the flow but the network (tasks/engine/channel.py).
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger

from tasks.engine import storage
from tasks.engine.brake import Brake, example_of, rows_text
from tasks.engine.channel import ClusterChannel, LocalChannel
from tasks.engine.dispatch import Dispatcher, Tally
from tasks.engine.job import Job, RunOptions
from tasks.engine.journal import (
    Journal,
    Reasons,
    assemble_output,
    needs_work,
    open_journal,
)
from tasks.engine.outcomes import FatalError, MachineryError, TooManyFailed
from tasks.engine.progress import (
    PhaseClock,
    Progress,
    duration,
    projected_cost,
    publish_summary,
    summary_markdown,
)
from tasks.engine.runners import is_dask, make_task_runner, parallel_chunks
from tasks.engine.staging import ChunkRef, frame_digest, stage_input
from tasks.engine.tables import read_chunks


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


def rows_done(journal: Journal, chunks: list[ChunkRef]) -> dict[int, int]:
    """Chunk index -> its rows with a final record (a chunk with fewer than its rows has work left)."""
    return {chunk.index: sum(not needs_work(r) for r in journal.read(chunk.digest).values()) for chunk in chunks}


def open_channel(job: Job, chunks: list[ChunkRef], options: RunOptions, task_runner: Any) -> tuple[Any, Any]:
    """The channel chunks send their rows through, and the flow's end of it."""
    if not is_dask(options.runner):
        channel = LocalChannel(str(job.local_dir))
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


def run_chunks(job: Job, chunks: list[ChunkRef], options: RunOptions, journal: Journal, progress: Progress,
               clock: PhaseClock) -> Tally:
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
            clock.lap("runner start")
            brake = Brake(min(options.brake_rows, sum(c.rows for c in chunks) - tally.rows_done))
            dispatcher = Dispatcher(job, journal, channel, inbox, progress, tally, brake)
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
                clock.lap("chunks")
    finally:
        if dispatcher is not None and not is_dask(options.runner):
            dispatcher.collect()  # what the chunk threads sent while they stopped (the runner waited for them)
        progress.close()
        clock.lap("runner stop")
    return tally


def run_job(job: Job, input_path: str | Path, output_path: str | Path, options: RunOptions = RunOptions(),
            facts: dict[str, Any] | None = None, projected_rows: int | None = None) -> dict[str, Any]:
    """Run `job` over every row of the input; returns the run's figures (also published as artifact).
    The cost is projected to `projected_rows` (default: all the input's rows when `limit` is given).
    A fatal error, the brake (rows failing systematically: tasks/engine/brake.py), or a chunk that
    failed for a reason that is not a row's, fails the run loudly after the output is written (the
    rows not sent say `not processed: <why>`); so does a run with more than
    `options.max_failed_fraction` of its rows failed (`TooManyFailed`)."""
    logger = get_run_logger()
    started, clock = time.monotonic(), PhaseClock()
    chunks = stage_input(job, input_path, options)
    total_rows = sum(c.rows for c in chunks)
    full_rows = projected_rows or (exact_rows(input_path, options.sheet, options.encoding)
                                   if options.limit is not None and "cost_usd" in job.totals else None)
    staged_at = time.monotonic()
    clock.lap("stage")
    logger.info(f"{job.name}: {total_rows:,} rows from {input_path} in {len(chunks)} chunks "
                f"(staged in {staged_at - started:.1f} s), runner {options.runner}")
    limits = [rate for resource in job.resources if (rate := getattr(resource, "row_rate_limit", None))]
    progress = Progress(job.name, total_rows, logger, projected_rows=full_rows or total_rows,
                        limit_per_second=min(limits, default=None))
    journal = open_journal(job)
    clock.lap("progress, journal")
    tally = run_chunks(job, chunks, options, journal, progress, clock)
    processed_at = time.monotonic()
    counts, reasons, sums = assemble_output(job, journal, chunks, output_path, tally.chunk_errors,
                                           str(tally.fatal or "the chunk did not finish"))
    clock.lap("output")
    full_rows = full_rows if "cost_usd" in sums else None
    progress.update(total_rows, final=True, totals=sums)
    seconds = time.monotonic() - started
    processed = sum(report.processed for report in tally.reports)
    stats = tally.stats
    statuses = {job.ok_label if status == "ok" else status: n  # as the output says them: ok and failed, and
                for status, n in {"ok": 0, "partial": 0, "failed": 0, **counts}.items()  # every other one met
                if n or status in ("ok", "failed")}
    figures = {
        "output": str(output_path), "rows": total_rows, "ok": counts["ok"], "partial": counts["partial"],
        "failed": counts["failed"], **{name: round(value, 6) for name, value in sums.items()},
        "chunks": len(chunks), "chunks_done_before": tally.done_before, "passes": tally.passes,
        "requests": stats.requests, "retries": stats.retries, "http_429": stats.throttled,
        "http_5xx": stats.server_errors, "timeouts": stats.timeouts, "connection_errors": stats.connection_errors,
        "wall_seconds": round(seconds, 2), "rows_per_second": round(total_rows / seconds, 1) if seconds else 0.0,
        "processing_rows_per_second": round(processed / max(processed_at - staged_at, 1e-9), 1),
        "failure_reasons": dict(reasons.most_common(20)), "chunks_per_worker": dict(tally.workers),
        "statuses": statuses, "peak_rss_mb": tally.peak_rss,
    }
    if full_rows is not None:
        figures.update(input_rows=full_rows, projected_cost_usd=round(projected_cost(sums["cost_usd"], total_rows, full_rows), 4))
    headline = ", ".join(f"{n:,} {status}" for status, n in statuses.items()) + f" of {total_rows:,} rows"
    publish_summary(job.name, summary_markdown(f"{job.name} run summary", {
        "output": f"`{storage.shown(output_path)}`", "rows": f"{total_rows:,}",
        **{status: f"{n:,}" for status, n in statuses.items()}, **(facts or {}),
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
    clock.lap("summary")
    figures["phase_seconds"] = clock.seconds
    logger.info(f"{job.name}: done: {headline} in {duration(seconds)}; output {output_path}")
    if tally.fatal is not None:
        raise tally.fatal
    if tally.chunk_errors:
        index, error = next(iter(tally.chunk_errors.items()))
        raise MachineryError(f"{len(tally.chunk_errors)} chunk(s) failed, not for a reason of their rows "
                             f"(chunk {index}: {error}); the output says which rows were not processed")
    check_failed_fraction(figures, reasons, options.max_failed_fraction)
    return figures


def check_failed_fraction(figures: dict[str, Any], reasons: Reasons, max_fraction: float | None) -> None:
    """TooManyFailed when more than `max_fraction` of the run's rows failed (the output is written)."""
    failed, rows = figures["failed"], figures["rows"]
    if max_fraction is None or not rows or failed / rows <= max_fraction:
        return
    reason, count = reasons.most_common(1)[0]
    raise TooManyFailed(f"{failed:,} of {rows:,} rows failed ({failed / rows:.0%}, more than the "
                        f"{max_fraction:.0%} a run accepts); most common problem ({rows_text(count)}): "
                        f"{example_of(reasons.examples[reason])}; "
                        f"output written to {figures['output']}", figures)




def run_job_on_frame(job: Job, frame: pd.DataFrame, options: RunOptions) -> tuple[dict[str, Any], pd.DataFrame]:
    """`run_job` over an in-memory table (written under the work dir, named by its content, so a
    rerun with the same rows resumes); returns the figures and the output rows in order. The flow
    that called it judges the failed rows (`max_failed_fraction` does not apply: it has more to write)."""
    folder = job.local_dir / "frames" / job.name
    folder.mkdir(parents=True, exist_ok=True)
    digest = frame_digest(frame)
    source, output = folder / f"{digest}.csv", folder / f"{digest}.out.jsonl"
    frame.to_csv(source, index=False)
    try:
        figures = run_job(job, source, output, dataclasses.replace(options, max_failed_fraction=None))
        return figures, pd.read_json(output, lines=True, dtype=False) if output.stat().st_size else frame.iloc[:0]
    finally:
        source.unlink(missing_ok=True)
        output.unlink(missing_ok=True)
