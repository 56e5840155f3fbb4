"""Dispatch, on the flow side: send chunks to the runner in a sliding window (a probe first, for
the brake), take every finished row from the channel as it comes, journal it, hand it to the hooks
and the brake, and tally what the chunks did."""
from __future__ import annotations

import collections
import dataclasses
import json
import queue
from collections import Counter
from typing import Any

import pandas as pd

from tasks.engine.brake import Brake
from tasks.engine.chunk import ChunkReport, ChunkWork, process_chunk
from tasks.engine.job import Job, Record, RowStatus
from tasks.engine.journal import Journal, needs_work
from tasks.engine.outcomes import Braked, CallStats, FatalError
from tasks.engine.progress import Progress
from tasks.engine.staging import ChunkRef, input_problem

COLLECT_SECONDS = 0.25  # how often the flow takes finished rows from the channel


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
    """Sends chunks in a sliding window (memory stays flat), takes finished rows from the channel.

    Until the brake knows whether the first rows all fail, chunks go as probes: together they carry
    no more rows than the brake still needs, so a wrong URL costs those rows, not a window of
    chunks. The rest of a probe's chunk goes on when it ends; the window opens as soon as a row
    succeeds, or after a round of probes that taught the brake nothing (their rows were bad input)."""

    def __init__(self, job: Job, journal: Journal, channel: Any, inbox: Any, progress: Progress, tally: Tally,
                 brake: Brake):
        self.job, self.journal, self.channel, self.inbox = job, journal, channel, inbox
        self.progress, self.tally, self.brake = progress, tally, brake
        self.sent_job = dataclasses.replace(job, hooks=None)  # the hooks and their stores stay here
        self.in_flight: dict[str, InFlight] = {}  # chunk digest ->
        self.finished: queue.SimpleQueue = queue.SimpleQueue()
        self.calls = CallStats()  # as they happen, for the timeline (the run's figures come from the chunk reports)
        self.probe_done = False  # a round of probes taught the brake nothing: the window opens undecided
        self.probe_budget = 0  # rows the probes of this round may still carry
        self.round_start: int | None = None  # the brake's rows when this round of probes began
        self.probed: set[int] = set()  # rows probes took in this pass: their chunks go on without them

    def record(self, digest: str, records: list[Record]) -> None:
        """Journal rows answered on the flow side (input problems, known from a store)."""
        self.journal.append(digest, [json.dumps(r, ensure_ascii=False, default=str) for r in records])
        for record in records:
            self.tally.count(record, self.job.totals)

    def prepare(self, chunk: ChunkRef, cap: int | None = None) -> tuple[ChunkWork | None, bool]:
        """The chunk's rows that still need work (the first `cap` of them), and whether the cap left
        some out; rows answered here are journaled at once."""
        records = self.journal.read(chunk.digest)
        frame = chunk.frame()
        frame = frame[[needs_work(records.get(n)) and n not in self.probed for n in frame["_row"]]]
        more = cap is not None and len(frame) > cap
        if cap is not None:
            frame = frame.head(cap)
            self.probed.update(frame["_row"])
        if frame.empty:
            return None, more
        duplicates, answered, rows = dict(chunk.duplicates), [], []
        for row in frame.to_dict("records"):
            problem = input_problem(row, self.job.key_column, duplicates, chunk.source)
            if problem:
                answered.append({"row": row["_row"], "status": RowStatus.FAILED.value, "error": problem,
                                 "retryable": False})
            else:
                before = records.get(row["_row"]) or {}  # a row that gave up before: its attempts so far
                rows.append({**row, "_attempts": before.get("attempts", 0), "_passes": before.get("passes", 0)})
        if self.job.hooks is not None and rows:
            rows, known = self.job.hooks.prepare(rows)
            answered += known
        self.record(chunk.digest, answered)
        if not rows:
            return None, more
        self.in_flight[chunk.digest] = InFlight(chunk, {row["_row"]: row for row in rows})
        self.brake.sent(chunk.digest, len(rows))
        return ChunkWork(chunk.index, chunk.digest, pd.DataFrame(rows, dtype=object), chunk.source,  # values as they are
                         first=not self.brake.proven), more

    def collect(self) -> None:
        """Journal the rows the channel brought, hand them to the hooks and the brake, move the progress."""
        taken = self.inbox.take()
        self.calls.add(taken.calls)
        for digest, lines in taken.lines.items():
            flight = self.in_flight.get(digest)
            records = [json.loads(line) for line in lines]
            for record in records:
                self.brake.observe(digest, record)
            if self.brake.verdict:  # what failed once the brake fired is sent again by a rerun
                lines = [json.dumps(self.stopped(r), ensure_ascii=False, default=str) for r in records]
            self.journal.append(digest, lines)
            for record in records:
                self.tally.count(record, self.job.totals)
                if flight is not None and self.job.hooks is not None and record["row"] in flight.rows:
                    self.job.hooks.finished(flight.rows[record["row"]], record)
        if self.brake.verdict and self.tally.fatal is None:
            self.tally.fatal = Braked(self.brake.verdict)
            self.inbox.abort(self.brake.verdict)
            for digest, record in self.brake.culprits:
                self.journal.append(digest, [json.dumps(self.stopped(record), ensure_ascii=False, default=str)])
        if taken.lines and self.job.hooks is not None:
            self.job.hooks.flush()
        if taken.lines or taken.calls:
            self.progress.update(self.tally.rows_done, totals=self.tally.totals, calls=self.calls)

    @staticmethod
    def stopped(record: Record) -> Record:
        """A row failed in a run the brake stopped: retryable (a rerun after the fix sends it again),
        unless its own data is at fault."""
        failed = record["status"] == RowStatus.FAILED.value and not record.get("bad_input")
        return {**record, "retryable": True} if failed else record

    def probing(self, futures: dict) -> bool:
        """Whether chunks still go as probes; a round of probes begins when the last one ended."""
        if self.probe_done or self.brake.rows_to_decide() == 0:
            return False
        if self.probe_budget <= 0 and not any(probe for _, _, probe, _ in futures.values()):
            if self.round_start == self.brake.attempted:  # the last round taught the brake nothing
                self.probe_done = True
                return False
            self.round_start, self.probe_budget = self.brake.attempted, self.brake.rows_to_decide()
        return True

    def run_pass(self, task_runner: Any, chunks: list[ChunkRef], window: int) -> None:
        pending, futures = collections.deque(chunks), {}
        self.probed = set()
        while True:
            probing = self.probing(futures)
            while pending and len(futures) < window and self.tally.fatal is None and (
                    not probing or self.probe_budget > 0):
                chunk = pending.popleft()
                work, more = self.prepare(chunk, self.probe_budget if probing else None)
                if work is None:
                    if more:
                        pending.appendleft(chunk)
                    continue
                if probing:
                    self.probe_budget -= len(work.rows)
                future = task_runner.submit(process_chunk, {"chunk": work, "job": self.sent_job, "channel": self.channel})
                futures[id(future)] = (future, chunk, probing, more)
                future.add_done_callback(lambda f: self.finished.put(id(f)))
            if not futures:
                return
            try:
                done = [self.finished.get(timeout=COLLECT_SECONDS)]
            except queue.Empty:
                done = []
            self.collect()  # after a chunk ends, its last rows are already with the channel
            for key in done:
                future, chunk, _, more = futures.pop(key)
                self.settle(future, chunk)
                if more and chunk.index not in self.tally.chunk_errors:  # the rest of a probe's chunk
                    pending.appendleft(chunk)

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
