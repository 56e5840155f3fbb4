"""The flow side's copy of the input, in chunks: streamed once into content-addressed chunk files
under the work dir (memory does not grow with the file), with the key column's repeats found.
Workers never read these files: a chunk's rows travel with its task."""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.engine.job import Job, RunOptions
from tasks.engine.runners import is_dask
from tasks.engine.storage import name_of
from tasks.engine.tables import as_text, count_rows, read_chunks

MAX_CHUNKS = {"thread": 300, "dask": 100}  # a Prefect task costs ~50 ms here (server, result), Dask ~200 ms


@dataclass(frozen=True)
class ChunkRef:
    """A staged chunk: its rows live in `staged` (a pickle on the flow's disk)."""

    index: int
    first_row: int
    rows: int
    digest: str
    staged: str
    duplicates: tuple[tuple[int, int], ...] = ()  # (row, row it repeats) for the key column
    source: str = ""  # the input file's name, for error messages

    def frame(self) -> pd.DataFrame:
        return pd.read_pickle(self.staged)


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


def stage_input(job: Job, input_path: str | Path, options: RunOptions) -> list[ChunkRef]:
    """Stream the input into chunk files; returns the chunks (in input order) with key duplicates."""
    limit = options.limit
    estimate = count_rows(input_path)
    size = effective_chunk_size(options.chunk_size, min(estimate, limit or estimate), options.runner)
    staged_dir = job.local_dir / "staged"  # derived from the input again by a rerun: never at a URL
    staged_dir.mkdir(parents=True, exist_ok=True)
    required = tuple(dict.fromkeys((*options.required, *((job.key_column,) if job.key_column else ()))))
    chunks, key_rows, key_hashes, seen = [], [], [], 0
    for frame in read_chunks(input_path, size, required=required, sheet=options.sheet, encoding=options.encoding):
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
        chunks.append(ChunkRef(len(chunks), first_row, len(frame), digest, str(path), source=name_of(input_path)))
    if not key_rows:
        return chunks
    duplicates = find_duplicates(np.concatenate(key_rows), np.concatenate(key_hashes))
    by_chunk: dict[int, list] = {}
    bounds = np.array([c.first_row for c in chunks])
    for row, first in sorted(duplicates.items()):
        by_chunk.setdefault(int(np.searchsorted(bounds, row, side="right") - 1), []).append((row, first))
    return [c if c.index not in by_chunk else  # the duplicates change the chunk's answer: new digest
            ChunkRef(c.index, c.first_row, c.rows, frame_digest(c.frame(), by_chunk[c.index]),
                     c.staged, tuple(by_chunk[c.index]), c.source) for c in chunks]


def input_problem(row: dict, key: str | None, duplicates: dict[int, int], source: str) -> str:
    """Why a row cannot be sent at all (unreadable, empty or repeated key), or ""."""
    if row["_input_error"]:
        return row["_input_error"]
    if key is not None:
        value = row.get(key)
        where = f"{source} row {row['_row']}, column {key}"
        if as_text(value).strip() == "":
            return f"{where}: empty"
        if row["_row"] in duplicates:
            return f"{where}: duplicate {key} {value!r} (first seen at row {duplicates[row['_row']]})"
    return ""
