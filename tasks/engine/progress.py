"""Progress as rows finish: a Prefect progress artifact, log lines with the recent rows/s and ETA, an
optional terminal bar (the CLI turns it on), and the run-summary markdown artifact with a timeline."""
from __future__ import annotations

import collections
import dataclasses
import logging
import re
import time
from typing import Any

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)

from tasks.engine.outcomes import CallStats

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


class PhaseClock:
    """Wall seconds per phase of a run (where its time goes, for the figures): `lap(name)` ends the
    phase that began at the previous lap."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + now - self._last, 3)
        self._last = now


def projected_cost(cost: float, rows: int, all_rows: int) -> float:
    """The $ of `all_rows` rows at the cost per row of the `rows` done."""
    return cost / rows * all_rows if rows else 0.0


class Progress:
    """`update(rows_done)` as rows finish (the engine calls it every 0.25 s); throttled so it costs
    nothing per row: the Prefect progress artifact at most once per `artifact_every` seconds, a log
    line every `log_every` seconds when no terminal bar shows the same figures. The rate is over the
    last `window` seconds, so the ETA follows the run's present speed, not its start."""

    def __init__(self, name: str, total_rows: int, logger: logging.Logger, artifact_every: float = 1.0,
                 log_every: float = 10.0, projected_rows: int | None = None, limit_per_second: float | None = None,
                 window: float = 20.0):
        self.name, self.total, self.logger = name, max(total_rows, 0), logger
        self.projected_rows = projected_rows or self.total  # a --limit run projects its cost to the whole input
        self.artifact_every, self.log_every, self.window = artifact_every, log_every, window
        self.limit_per_second = limit_per_second  # the tightest request limit of the run's APIs
        self.started = time.monotonic()
        self.done = self.baseline = 0
        self.samples: collections.deque[tuple[float, int]] = collections.deque()  # from the first rows this run finished
        self.history: list[tuple[float, int, int, int]] = []  # (seconds since start, rows done, 429s, retries)
        self.calls = CallStats()  # the run's call figures so far
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

            self._bar = Bar(TextColumn(name), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[figures]}"),
                            TimeRemainingColumn(), transient=False)
            self._task = self._bar.add_task(name, total=self.total, figures="")
            self._bar.start()

    def rate(self) -> float:
        """Rows per second over the last `window` seconds, counted from the first rows this run
        finished (so neither start-up nor rows done by an earlier run skew it)."""
        now = time.monotonic()
        while len(self.samples) > 2 and self.samples[1][0] <= now - self.window:
            self.samples.popleft()
        if not self.samples or now <= self.samples[0][0]:
            return 0.0
        since, at = self.samples[0]
        return (self.done - at) / (now - since)

    def eta(self) -> str:
        rate = self.rate()
        return duration((self.total - self.done) / rate) if rate > 0 and self.done < self.total else "-"

    def limit_note(self, rate: float) -> str:
        """', limited by the API's N/min' when the run goes at (nearly) its tightest limit."""
        limit = self.limit_per_second
        if not limit or rate < 0.8 * limit:
            return ""
        return f", limited by the API's {limit * 60:,.0f}/min" if limit < 10 else f", limited by the API's {limit:,.0f}/s"

    def cost_note(self, totals: dict[str, float] | None) -> str:
        """'$ so far, projected $ for all rows' when the rows have a cost, else ""."""
        if not totals or "cost_usd" not in totals or not self.done:
            return ""
        cost = totals["cost_usd"]
        return (f"; ${cost:,.4f} so far, projected ${projected_cost(cost, self.done, self.projected_rows):,.2f} "
                f"for all {self.projected_rows:,} rows")

    def figures(self, totals: dict[str, float] | None) -> str:
        rate = self.rate()
        return f"{rate:,.0f} rows/s{self.limit_note(rate)}, ETA {self.eta()}{self.cost_note(totals)}"

    def update(self, done: int, final: bool = False, totals: dict[str, float] | None = None,
               calls: CallStats | None = None) -> None:
        now = time.monotonic()
        if calls is not None:
            self.calls = dataclasses.replace(calls)
        self.done = min(done, self.total)
        if self.samples or self.done > self.baseline:
            self.samples.append((now, self.done))
        figures = self.figures(totals)
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, figures=figures)
        if final or now - self._last_artifact >= self.artifact_every:
            self._last_artifact = now
            self.history.append((now - self.started, self.done, self.calls.throttled, self.calls.retries))
            percent = 100.0 * self.done / self.total if self.total else 100.0
            update_progress_artifact(self.artifact_id, progress=percent,
                                     description=f"{self.name}: {self.done:,} of {self.total:,} rows finished, {figures}")
        if final or (self._bar is None and now - self._last_log >= self.log_every):
            self._last_log = now
            percent = 100.0 * self.done / self.total if self.total else 100.0
            self.logger.info(f"{self.name}: {self.done:,}/{self.total:,} rows ({percent:.1f}%), {figures}")

    def timeline(self, rows: int = 12) -> str:
        """The summary's chart: rows finished over time, with the 429s and retries of each step, as a
        markdown table of up to `rows` steps."""
        if len(self.history) < 2:
            return ""
        end = self.history[-1][0]
        marks = [end * (n + 1) / rows for n in range(rows)]
        lines = ["## Rows finished over time", "", "| time | rows finished | rows/s in the step | 429s | retries |",
                 "|---|---|---|---|---|"]
        before, index = (0.0, self.history[0][1], 0, 0), 0
        for mark in marks:
            while index + 1 < len(self.history) and self.history[index + 1][0] <= mark:
                index += 1
            t, n, throttled, retries = self.history[index]
            if t <= before[0]:
                continue
            bar = "█" * round(20 * n / self.total) if self.total else ""
            lines.append(f"| {duration(t)} | {n:,} {bar} | {(n - before[1]) / (t - before[0]):,.1f} | "
                         f"{throttled - before[2]:,} | {retries - before[3]:,} |")
            before = (t, n, throttled, retries)
        return "\n".join(lines)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def summary_markdown(title: str, facts: dict[str, Any], failures: dict[str, int], timeline: str = "") -> str:
    lines = [f"# {title}", "", "| figure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in facts.items()]
    if failures:
        lines += ["", "## Failed rows by reason", "", "| reason | rows |", "|---|---|"]
        lines += [f"| {reason.replace('|', '/')} | {count:,} |" for reason, count in failures.items()]
    if timeline:
        lines += ["", timeline]
    return "\n".join(lines)


def publish_summary(name: str, markdown: str, headline: str = "") -> None:
    """The run's markdown artifact; `headline` (counts, say) shows on its card in the UI."""
    create_markdown_artifact(markdown, key=artifact_key(name, "summary"),
                             description=f"{name} run summary{': ' + headline if headline else ''}")
