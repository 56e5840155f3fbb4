"""The run's journal, on the flow side: one JSON line per finished row (the last line per row
wins), one file per chunk, named by the chunk's content digest. It is the checkpoint of a run:
a rerun sends only rows with no line yet or a transient failure, and the output is assembled
from it in input order."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pandas as pd

from tasks.engine.job import Job, Record, RowStatus
from tasks.engine.staging import ChunkRef
from tasks.engine.tables import OutputWriter


def read_journal(path: Path) -> dict[int, Record]:
    """Row number -> last record; a torn last line (killed mid-write) is ignored."""
    records: dict[int, Record] = {}
    if path.exists():
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                records[record["row"]] = record
    return records


def needs_work(record: Record | None) -> bool:
    return record is None or (record["status"] == RowStatus.FAILED.value and record.get("retryable", False))


class Journal:
    """The journal files of one job (`job.journal_dir`)."""

    def __init__(self, job: Job):
        self.folder = job.journal_dir
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.folder / f"{digest}.jsonl"

    def read(self, digest: str) -> dict[int, Record]:
        return read_journal(self.path(digest))

    def append(self, digest: str, lines: list[str]) -> None:
        if lines:
            with open(self.path(digest), "a", encoding="utf-8") as handle:
                handle.write("".join(line + "\n" for line in lines))


def reason_of(error: str) -> str:
    """Group similar errors: drop row numbers, quoted values and numbers."""
    text = re.sub(r"^[^:]*row \d+( \(line \d+\))?[:,] ?", "", error)
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    return re.sub(r"\d+(\.\d+)?", "N", text)[:120]


def assemble_output(job: Job, journal: Journal, chunks: list[ChunkRef], output: str | Path,
                    chunk_errors: dict[int, str], unfinished: str = "the chunk did not finish") -> tuple[Counter, Counter, Counter]:
    """Write input columns + result columns + status + error, in input order, one row per input row.
    Returns row counts per status, failure reasons, and the sums of the job's `totals` columns."""
    writer, counts, reasons, sums = OutputWriter(output), Counter(), Counter(), Counter()
    for chunk in chunks:
        frame = chunk.frame()
        records = journal.read(chunk.digest)
        missing = f"not processed: {chunk_errors.get(chunk.index, unfinished)}"
        results = {name: [] for name in job.result_columns}
        status, errors = [], []
        for number in frame["_row"]:
            record = records.get(number) or {"status": RowStatus.FAILED.value, "error": missing}
            status.append(job.ok_label if record["status"] == RowStatus.OK.value else record["status"])
            errors.append(record.get("error", ""))
            values = record.get("result") or {}
            for name in job.result_columns:
                results[name].append(values.get(name))
            for name in job.totals:
                if isinstance(values.get(name), (int, float)):
                    sums[name] += values[name]
            counts[record["status"]] += 1
            if record["status"] != RowStatus.OK.value:
                reasons[reason_of(record["error"])] += 1
        replaced = {*job.result_columns, "status", "error"}  # e.g. an earlier run's output given as input
        out = frame[[c for c in frame.columns if not c.startswith("_") and c not in replaced]].copy()
        for name, values in results.items():  # a declared type holds in every chunk (parquet's schema)
            out[name] = pd.array(values, dtype=job.column_types[name]) if name in job.column_types else values
        out["status"], out["error"] = status, errors
        writer.write(out)
    writer.close()
    return counts, reasons, sums
