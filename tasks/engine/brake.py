"""The brake: a run whose rows fail systematically (a wrong base URL answering web pages, an API
that moved, a changed schema) stops before it spends the rest of its rows.

It watches the rows the flow takes from the channel (on every runner) and fires when
- the run's first `first_rows` rows sent all failed for good (not retryable), whatever the reasons; or
- every row of a chunk (at least `CHUNK_MIN_ROWS`) failed with the same reason (retryable or not),
  so a failure that begins in the middle of a run stops it too.
Rows that fail on their own data (`RowError(bad_input=True)`) count for neither: they cost no call
and a file of bad rows is the user's to fix, with every bad row listed in the output.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from tasks.engine.job import Record, RowStatus
from tasks.engine.journal import reason_of

CHUNK_MIN_ROWS = 20  # a chunk with fewer rows sent says too little about the API
WEB_PAGE = re.compile(r"<\s*(!doctype|html|head|body)\b", re.IGNORECASE)


def example_of(error: str, limit: int = 160) -> str:
    """One error as it shows in a one-line message."""
    text = " ".join(error.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def rows_text(count: int) -> str:
    return f"{count:,} row{'' if count == 1 else 's'}"


def hint_for(example: str) -> str:
    return " — the answers are web pages, not the API's: check the base URL" if WEB_PAGE.search(example) else ""


@dataclass
class ChunkWatch:
    """The rows a chunk was sent with, and how those that came back failed."""

    expected: int
    seen: int = 0
    bad_input: int = 0
    reasons: Counter = field(default_factory=Counter)
    failures: list[tuple[str, Record]] = field(default_factory=list)


class Brake:
    """`sent(digest, rows)` for each chunk sent, `observe(digest, record)` for each row that comes
    back; `verdict` is the one-line reason to stop ("" while the run goes on) and `culprits` the
    failed rows it is based on (journal them as retryable: a rerun after the fix sends them again).
    `first_rows` 0 turns the brake off."""

    def __init__(self, first_rows: int):
        self.first_rows = max(0, first_rows)
        self.attempted = 0  # rows sent that came back, bad input aside
        self.proven = False  # a row succeeded (ok, partial, or a workload's own word for it)
        self.decided = self.first_rows == 0  # the first rows did not all fail for good (or the brake is off)
        self.first_failures: list[tuple[str, Record]] = []
        self.chunks: dict[str, ChunkWatch] = {}
        self.verdict = ""
        self.culprits: list[tuple[str, Record]] = []

    def rows_to_decide(self) -> int:
        """Rows still needed before the first-rows rule can fire (0 once it is decided)."""
        return 0 if self.decided else self.first_rows - self.attempted

    def sent(self, digest: str, rows: int) -> None:
        if self.first_rows:
            self.chunks[digest] = ChunkWatch(rows)

    def observe(self, digest: str, record: Record) -> None:
        failed = record["status"] == RowStatus.FAILED.value
        bad_input = failed and record.get("bad_input", False)
        if not failed:
            self.proven = True
        if not bad_input:
            self.attempted += 1
            self._first_rows(digest, record, failed and not record.get("retryable", False))
        watch = self.chunks.get(digest)
        if watch is not None:
            self._chunk(digest, watch, record, failed, bad_input)

    def _first_rows(self, digest: str, record: Record, failed_for_good: bool) -> None:
        if self.decided or self.verdict:
            return
        if not failed_for_good:
            self.decided, self.first_failures = True, []
            return
        self.first_failures.append((digest, record))
        if len(self.first_failures) >= self.first_rows:
            self.decided = True
            reasons = Counter(reason_of(r["error"]) for _, r in self.first_failures)
            top = reasons.most_common(1)[0][0]
            example = example_of(next(r["error"] for _, r in self.first_failures if reason_of(r["error"]) == top))
            others = f" ({rows_text(reasons[top])}; {len(reasons) - 1} other reason(s) for " \
                     f"{rows_text(len(self.first_failures) - reasons[top])})" if len(reasons) > 1 else ""
            self._fire(f"stopped after the first {len(self.first_failures):,} rows sent all failed: {example}"
                       f"{others}{hint_for(example)}", self.first_failures)

    def _chunk(self, digest: str, watch: ChunkWatch, record: Record, failed: bool, bad_input: bool) -> None:
        watch.seen += 1
        if bad_input:
            watch.bad_input += 1
        elif failed:
            watch.reasons[reason_of(record["error"])] += 1
            watch.failures.append((digest, record))
        if len(watch.reasons) > 1 or not failed:
            del self.chunks[digest]  # this chunk will not show one reason for every row
            return
        if watch.seen < watch.expected:
            return
        del self.chunks[digest]
        if len(watch.failures) == watch.expected - watch.bad_input >= CHUNK_MIN_ROWS and not self.verdict:
            rows = sorted(r["row"] for _, r in watch.failures)
            example = example_of(watch.failures[0][1]["error"])
            self._fire(f"stopped after all {len(rows):,} rows sent of a chunk (rows {rows[0]:,}-{rows[-1]:,}) "
                       f"failed the same way: {example}{hint_for(example)}", watch.failures)

    def _fire(self, verdict: str, culprits: list[tuple[str, Record]]) -> None:
        self.verdict, self.culprits = verdict, list(culprits)
