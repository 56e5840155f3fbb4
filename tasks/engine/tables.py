"""Read inputs in chunks (csv, xlsx, parquet, jsonl) and write ordered outputs, streaming both ways.

Every chunk is a DataFrame of the file's columns plus `_row` (1-based data row number) and
`_input_error` (why the row is unusable, or ""). Problems with a single row never stop the read:
they become that row's `_input_error`, naming the file, row and column. Problems with the whole
file (missing, empty, no such column) raise `InputError` before any work is done.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from tasks.engine.storage import AtomicOutput, estimate_lines, is_file, is_url, name_of, open_input, source

FORMATS = {".csv": "csv", ".txt": "csv", ".tsv": "csv", ".xlsx": "xlsx", ".xlsm": "xlsx",
           ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
XLSX_MAX_ROWS = 1_048_575  # Excel's row limit, less the header
_BAD_BYTES = re.compile("[\udc80-\udcff]")
csv.field_size_limit(1 << 30)  # the default (128 KiB) would stop the whole read at one long cell


class InputError(ValueError):
    """The input as a whole cannot be used; the message says which file, sheet and column."""


def file_format(path: str | os.PathLike) -> str:
    suffix = os.path.splitext(name_of(path))[1].lower()
    if suffix not in FORMATS:
        raise InputError(f"{path}: unsupported file type {suffix!r} (use {', '.join(sorted(set(FORMATS)))})")
    return FORMATS[suffix]


def count_rows(path: str | os.PathLike) -> int:
    """A quick estimate of the number of data rows, to size chunks before reading."""
    kind = file_format(path)
    if kind == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(source(path)).metadata.num_rows
    if kind == "xlsx":
        import zipfile

        try:
            with zipfile.ZipFile(source(path)) as archive:  # ~50 bytes of sheet XML per row at the least
                sheets = [i.file_size for i in archive.infolist() if i.filename.startswith("xl/worksheets/")]
        except (zipfile.BadZipFile, OSError) as error:
            raise InputError(f"{path}: not a readable xlsx file ({error})") from None
        return min(XLSX_MAX_ROWS, max(sheets, default=0) // 50)
    if is_url(path):
        return max(0, estimate_lines(str(path)) - (kind == "csv"))
    lines = 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            lines += block.count(b"\n")
    return max(0, lines - (kind == "csv"))


def read_chunks(path: str | os.PathLike, chunk_size: int, required: tuple[str, ...] = (),
                sheet: str | None = None, encoding: str = "utf-8-sig") -> Iterator[pd.DataFrame]:
    """Yield DataFrames of at most `chunk_size` rows, in file order."""
    path = path if is_url(path) else Path(path)
    if not is_file(path):
        raise InputError(f"{path}: no such file")
    kind = file_format(path)
    if kind == "parquet":
        rows = _parquet_rows(path, chunk_size)
    else:
        reader = {"csv": _csv_rows, "xlsx": _xlsx_rows, "jsonl": _jsonl_rows}[kind]
        rows = _batched(reader(path, required, sheet=sheet, encoding=encoding), chunk_size)
    first = True
    for frame in rows:
        if first:
            missing = [c for c in required if c not in frame.columns]
            if missing:
                raise InputError(f"{path}: missing column(s) {missing}; found {_user_columns(frame)}")
            first = False
        yield frame


def _user_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if not c.startswith("_")]


def _batched(rows: Iterator, size: int) -> Iterator[pd.DataFrame]:
    """Group a reader's output (its header first, then (row number, values, error) tuples) into
    DataFrames; a file with a header and no rows gives one empty DataFrame with the columns."""
    columns = [*next(rows), "_row", "_input_error"]
    batch: list[dict] = []
    yielded = False
    for number, values, error in rows:
        batch.append({**values, "_row": number, "_input_error": error})
        if len(batch) >= size:
            yield pd.DataFrame(batch, columns=columns)
            batch, yielded = [], True
    if batch or not yielded:
        yield pd.DataFrame(batch, columns=columns)


def _check_header(path: Path, header: list, where: str = "") -> list[str]:
    names = [str(h).strip() if h is not None and str(h).strip() else f"column_{i + 1}" for i, h in enumerate(header)]
    seen = set()
    for name in names:
        if name in seen:
            raise InputError(f"{path}{where}: column {name!r} appears twice in the header")
        seen.add(name)
    return names


def _csv_rows(path: Path, required, sheet=None, encoding="utf-8-sig"):
    with open_input(path, "r", newline="", encoding=encoding, errors="surrogateescape") as handle:
        sample = handle.read(65536)
        if not sample.strip():
            raise InputError(f"{path}: the file is empty (no header row)")
        handle.seek(0)
        header_line = sample.splitlines()[0]
        delimiter = max(",;\t|", key=header_line.count)  # the header tells the delimiter
        reader = csv.reader(handle, delimiter=delimiter)
        header = _check_header(path, next(reader))
        yield header
        number = 0
        for fields in reader:
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # blank line: not a row
            number += 1
            problems = []
            if len(fields) != len(header):
                problems.append(f"has {len(fields)} fields, the header has {len(header)}")
            for name, value in zip(header, fields):
                if _BAD_BYTES.search(value):
                    problems.append(f"column {name}: bytes that are not valid {encoding} "
                                    "(set the input encoding, e.g. cp1252)")
            values = {name: _clean_text(value) for name, value in zip(header, fields)}
            where = f"{name_of(path)} row {number} (line {reader.line_num})"
            yield number, values, (f"{where}: " + "; ".join(problems)) if problems else ""


def _clean_text(value: str) -> str:
    return _BAD_BYTES.sub("\ufffd", value)


def as_text(value: Any) -> str:
    """A cell's value as text: "" for None and NaN (pandas' empty cell)."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def _xlsx_rows(path: Path, required, sheet=None, encoding=None):
    from openpyxl import load_workbook

    try:
        book = load_workbook(source(path), read_only=True, data_only=True)
    except Exception as error:  # openpyxl raises many kinds for a broken file
        raise InputError(f"{path}: not a readable xlsx file ({type(error).__name__}: {error})") from None
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise InputError(f"{path}: no sheet {sheet!r}; sheets are {book.sheetnames}")
        found = {}
        for ws in ([book[sheet]] if sheet is not None else book.worksheets):
            rows = ws.iter_rows(values_only=True)
            offset = 0
            for cells in rows:
                offset += 1
                if any(c not in (None, "") for c in cells):
                    break
            else:
                continue
            header = _check_header(path, list(cells), f" sheet {ws.title!r}")
            while header and header[-1].startswith("column_") and cells[len(header) - 1] is None:
                header.pop()
            found[ws.title] = header
            if sheet is None and not all(c in header for c in required):
                continue
            yield header
            number = 0
            for cells in rows:
                if all(c in (None, "") for c in cells):
                    continue
                number += 1
                yield number, {n: _cell_text(v) for n, v in zip(header, cells)}, ""
            return
        if not found:
            raise InputError(f"{path}: the workbook is empty (no header row on any sheet)")
        raise InputError(f"{path}: no sheet has the column(s) {list(required)}; headers found: {found}")
    finally:
        book.close()


def _jsonl_rows(path: Path, required, sheet=None, encoding="utf-8-sig"):
    def records():
        with open_input(path, "r", encoding=encoding, errors="surrogateescape") as handle:
            number = 0
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                number += 1
                try:
                    record = json.loads(line)
                    if not isinstance(record, dict):
                        raise ValueError("a line must hold one JSON object")
                    yield number, record, ""
                except ValueError as problem:
                    yield number, {}, f"{name_of(path)} row {number} (line {line_no}): invalid JSON: {problem}"

    header: dict[str, None] = {}  # a first pass finds every key, so all chunks have the same columns
    for _, record, _ in records():
        header.update(dict.fromkeys(record))
    if not header:
        raise InputError(f"{path}: the file is empty (no JSON objects)")
    yield list(header)
    for number, record, error in records():
        values = {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in record.items()}
        yield number, values, error


def _parquet_rows(path: Path, chunk_size: int) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    start = 1
    for batch in pq.ParquetFile(source(path)).iter_batches(batch_size=chunk_size):
        frame = batch.to_pandas()
        frame["_row"] = range(start, start + len(frame))
        frame["_input_error"] = ""
        start += len(frame)
        yield frame


class OutputWriter:
    """Append DataFrames in order; the file appears (renamed, or committed on object storage) only on
    `close()`, whole (tasks/engine/storage.py)."""

    def __init__(self, path: str | os.PathLike):
        self.path = path if is_url(path) else Path(path)
        self.kind = file_format(self.path)
        if self.kind == "csv" and name_of(self.path).lower().endswith(".tsv"):
            self.kind = "tsv"
        self.output = AtomicOutput(self.path)
        self.rows = 0
        self._handle = self._parquet = self._book = self._sheet = None

    def write(self, frame: pd.DataFrame) -> None:
        getattr(self, f"_write_{self.kind}")(frame)
        self.rows += len(frame)

    def _write_csv(self, frame: pd.DataFrame, sep: str = ",") -> None:
        if self._handle is None:
            self._handle = self.output.text(newline="", encoding="utf-8")
            frame.to_csv(self._handle, index=False, sep=sep)
        else:
            frame.to_csv(self._handle, index=False, header=False, sep=sep)

    def _write_tsv(self, frame: pd.DataFrame) -> None:
        self._write_csv(frame, sep="\t")

    def _write_jsonl(self, frame: pd.DataFrame) -> None:
        if self._handle is None:
            self._handle = self.output.text(encoding="utf-8")
        if len(frame):  # pandas 3 ends `lines=True` output with a newline, older versions do not
            text = frame.to_json(orient="records", lines=True, force_ascii=False)
            self._handle.write(text if text.endswith("\n") else text + "\n")

    def _write_parquet(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        frame = frame.copy()
        for name in frame.columns:  # mixed object columns (e.g. from jsonl) are written as text
            if frame[name].dtype == object:
                frame[name] = frame[name].map(lambda v: v if v is None or isinstance(v, str) else str(v))
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._parquet is None:
            schema = pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in table.schema])
            self._parquet = pq.ParquetWriter(self.output.sink(), schema)
        self._parquet.write_table(table.cast(self._parquet.schema))

    def _write_xlsx(self, frame: pd.DataFrame) -> None:
        from openpyxl import Workbook
        from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

        if self._book is None:
            self._book = Workbook(write_only=True)
            self._new_sheet(list(frame.columns))
        for values in frame.itertuples(index=False, name=None):
            if self._sheet_rows >= XLSX_MAX_ROWS:  # Excel's limit: continue on a new sheet
                self._new_sheet(list(frame.columns))
            self._sheet.append([
                None if v is None or v is pd.NA or (isinstance(v, float) and v != v)
                else ILLEGAL_CHARACTERS_RE.sub("", v) if isinstance(v, str) else v
                for v in values
            ])
            self._sheet_rows += 1

    def _new_sheet(self, columns: list[str]) -> None:
        n = len(self._book.worksheets) + 1
        self._sheet = self._book.create_sheet("results" if n == 1 else f"results_{n}")
        self._sheet.append(columns)
        self._sheet_rows = 0

    def close(self) -> Path | str:
        if self._handle is not None:
            self._handle.close()
        if self._parquet is not None:
            self._parquet.close()
        if self._book is not None:
            self._book.save(self.output.sink(seekable=True))
        if not self.output.written:
            raise ValueError(f"{self.path}: nothing was written")
        self.output.commit()
        return self.path
