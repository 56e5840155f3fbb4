"""Progress as chunks finish: a Prefect progress artifact, log lines with rows/s and ETA, an
optional terminal bar (the CLI turns it on), and the run-summary markdown artifact."""
from __future__ import annotations

import logging
import re
import time
from typing import Any

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)

_bar_enabled = False


def enable_terminal_bar() -> None:
    """Called by the CLI: show a rich progress bar on stderr while a flow runs in this process."""
    global _bar_enabled
    _bar_enabled = True


def artifact_key(*parts: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m{rest % 60:02d}s" if hours else f"{rest // 60}m{rest % 60:02d}s"


def projected_cost(cost: float, rows: int, all_rows: int) -> float:
    """The $ of `all_rows` rows at the cost per row of the `rows` done."""
    return cost / rows * all_rows if rows else 0.0


class Progress:
    """`update(rows_done)` as chunks finish; throttled so it costs nothing per row."""

    def __init__(self, name: str, total_rows: int, logger: logging.Logger, artifact_every: float = 2.0,
                 log_every: float = 5.0, projected_rows: int | None = None):
        self.name, self.total, self.logger = name, max(total_rows, 0), logger
        self.projected_rows = projected_rows or self.total  # a --limit run projects its cost to the whole input
        self.artifact_every, self.log_every = artifact_every, log_every
        self.started = time.monotonic()
        self.done = self.baseline = 0
        self._last_artifact = self._last_log = 0.0
        self.artifact_id = create_progress_artifact(
            progress=0.0, key=artifact_key(name, "progress"),
            description=f"{name}: rows finished out of {self.total}",
        )
        self._bar = self._task = None
        if _bar_enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as Bar

            self._bar = Bar(TextColumn(name), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                            TimeRemainingColumn(), transient=False)
            self._task = self._bar.add_task(name, total=self.total, rate="")
            self._bar.start()

    def rate(self) -> float:
        """Rows per second processed by this run (rows already done before it started excluded)."""
        elapsed = time.monotonic() - self.started
        return (self.done - self.baseline) / elapsed if elapsed > 0 else 0.0

    def cost_note(self, totals: dict[str, float] | None) -> str:
        """'$ so far, projected $ for all rows' when the rows have a cost, else ""."""
        if not totals or "cost_usd" not in totals or not self.done:
            return ""
        cost = totals["cost_usd"]
        return (f"; ${cost:,.4f} so far, projected ${projected_cost(cost, self.done, self.projected_rows):,.2f} "
                f"for all {self.projected_rows:,} rows")

    def update(self, done: int, final: bool = False, totals: dict[str, float] | None = None) -> None:
        self.done = done
        note = self.cost_note(totals)
        now = time.monotonic()
        if self._bar is not None:
            self._bar.update(self._task, completed=done, rate=f"{self.rate():,.0f} rows/s")
        if final or now - self._last_artifact >= self.artifact_every:
            self._last_artifact = now
            percent = 100.0 * done / self.total if self.total else 100.0
            update_progress_artifact(self.artifact_id, progress=min(percent, 100.0),
                                     description=f"{self.name}: {done:,} of {self.total:,} rows finished{note}")
        if final or now - self._last_log >= self.log_every:
            self._last_log = now
            rate = self.rate()
            eta = duration((self.total - done) / rate) if rate > 0 and done < self.total else "-"
            percent = 100.0 * done / self.total if self.total else 100.0
            self.logger.info(f"{self.name}: {done:,}/{self.total:,} rows ({percent:.1f}%), "
                             f"{rate:,.0f} rows/s, ETA {eta}{note}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def summary_markdown(title: str, facts: dict[str, Any], failures: dict[str, int]) -> str:
    lines = [f"# {title}", "", "| figure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in facts.items()]
    if failures:
        lines += ["", "## Failed rows by reason", "", "| reason | rows |", "|---|---|"]
        lines += [f"| {reason.replace('|', '/')} | {count:,} |" for reason, count in failures.items()]
    return "\n".join(lines)


def publish_summary(name: str, markdown: str, headline: str = "") -> None:
    """The run's markdown artifact; `headline` (counts, say) shows on its card in the UI."""
    create_markdown_artifact(markdown, key=artifact_key(name, "summary"),
                             description=f"{name} run summary{': ' + headline if headline else ''}")
