"""The run's journal, on the flow side: one JSON line per finished row (the last line per row
wins), one file per chunk, named by the chunk's content digest (objects, for a work dir at a URL). It
is the checkpoint of a run: a rerun sends only rows with no line yet or a transient failure, and the
output is assembled from it in input order."""
from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter
from pathlib import Path

import pandas as pd

from tasks.engine import storage
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


class ObjectJournal(Journal):
    """The journals of one job at a URL (a work dir on object storage, which cannot append): every
    append is a new immutable object `<digest>/<time>-<writer>.jsonl`, read back in name order (the
    last line per row still wins). Reading a chunk with several parts writes them as one part and
    removes the others, so a resumed run reads one object per chunk. The job's parts are listed once,
    when the journal opens; one flow run writes them at a time."""

    def __init__(self, job: Job):
        self.folder = str(job.journal_dir)
        self.fs, self.base = storage.filesystem(self.folder)
        self.writer = uuid.uuid4().hex[:8]
        self.parts: dict[str, list[str]] = {}
        try:
            found = self.fs.find(self.base) if self.fs.exists(self.base) else []
        except Exception as error:
            raise storage.explain(self.folder, error) from None
        self.stamp = 0  # parts are named after the newest one seen, whatever this machine's clock says
        for key in sorted(found):
            self.parts.setdefault(key.rsplit("/", 2)[-2], []).append(key)
            self.stamp = max(self.stamp, int(key.rsplit("/", 1)[-1].split("-", 1)[0]))

    def _new_part(self, digest: str, data: bytes) -> str:
        self.stamp = max(time.time_ns(), self.stamp + 1)
        key = f"{self.base}/{digest}/{self.stamp:020d}-{self.writer}.jsonl"
        self.fs.pipe_file(key, data)
        self.parts.setdefault(digest, []).append(key)
        return key

    def read(self, digest: str) -> dict[int, Record]:
        keys = list(self.parts.get(digest, ()))
        if not keys:
            return {}
        blobs = self.fs.cat(keys)
        data = b"".join(blobs[key] for key in keys)
        if len(keys) > 1:  # compact: the merged part first, then the old ones go (a crash between keeps both)
            merged = self._new_part(digest, data)
            self.fs.rm(keys)
            self.parts[digest] = [merged]
        records: dict[int, Record] = {}
        for line in data.decode("utf-8").splitlines():
            record = json.loads(line)
            records[record["row"]] = record
        return records

    def append(self, digest: str, lines: list[str]) -> None:
        if lines:
            self._new_part(digest, "".join(line + "\n" for line in lines).encode("utf-8"))


def open_journal(job: Job) -> Journal:
    """The job's journal: files under a local work dir, objects under a work dir at a URL."""
    return ObjectJournal(job) if storage.is_url(job.work_dir) else Journal(job)


def reason_of(error: str) -> str:
    """Group similar errors: drop row numbers, quoted values and numbers."""
    text = re.sub(r"^[^:]*row \d+( \(line \d+\))?[:,] ?", "", error)
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    return re.sub(r"\d+(\.\d+)?", "N", text)[:120]


class Reasons(Counter):
    """Failure reasons grouped by `reason_of`, each with its first error as the output says it."""

    def __init__(self):
        super().__init__()
        self.examples: dict[str, str] = {}

    def add(self, error: str) -> None:
        reason = reason_of(error)
        self[reason] += 1
        self.examples.setdefault(reason, error)


def assemble_output(job: Job, journal: Journal, chunks: list[ChunkRef], output: str | Path,
                    chunk_errors: dict[int, str], unfinished: str = "the chunk did not finish") -> tuple[Counter, Reasons, Counter]:
    """Write input columns + result columns + status + error, in input order, one row per input row.
    Returns row counts per status, failure reasons, and the sums of the job's `totals` columns."""
    writer, counts, reasons, sums = OutputWriter(output), Counter(), Reasons(), Counter()
    ok = RowStatus.OK.value
    for chunk in chunks:
        frame = chunk.frame()
        journaled = journal.read(chunk.digest)
        missing = {"status": RowStatus.FAILED.value, "error": f"not processed: {chunk_errors.get(chunk.index, unfinished)}"}
        records = [journaled.get(number) or missing for number in frame["_row"].tolist()]
        results = [record.get("result") or {} for record in records]
        for name in job.totals:
            for values in results:
                if isinstance(values.get(name), (int, float)):
                    sums[name] += values[name]
        counts.update(record["status"] for record in records)
        for record in records:
            if record["status"] != ok:
                reasons.add(record["error"])
        replaced = {*job.result_columns, "status", "error"}  # e.g. an earlier run's output given as input
        out = frame[[c for c in frame.columns if not c.startswith("_") and c not in replaced]].copy()
        for name in job.result_columns:  # a declared type holds in every chunk (parquet's schema)
            values = [result.get(name) for result in results]
            out[name] = pd.array(values, dtype=job.column_types[name]) if name in job.column_types else values
        out["status"] = [job.ok_label if record["status"] == ok else record["status"] for record in records]
        out["error"] = [record.get("error", "") for record in records]
        writer.write(out)
    writer.close()
    return counts, reasons, sums
