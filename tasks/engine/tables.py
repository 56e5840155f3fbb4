"""Read inputs in chunks (csv, xlsx, parquet, jsonl) and write ordered outputs, streaming both ways.

Every chunk is a DataFrame of the file's columns plus `_row` (1-based data row number) and
`_input_error` (why the row is unusable, or ""). Problems with a single row never stop the read:
they become that row's `_input_error`, naming the file, row and column. Problems with the whole
file (missing, empty, no such column) raise `InputError` before any work is done.
"""
from __future__ import annotations

import codecs
import csv
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from tasks.engine.storage import (
    AtomicOutput,
    estimate_lines,
    is_file,
    is_url,
    local,
    name_of,
    open_input,
    source,
)
from tasks.engine.values import (
    UnmappableValue,
    arrow_column,
    arrow_ready,
    cell_text,
    json_lines,
    json_value,
    text_ready,
)

FORMATS = {".csv": "csv", ".txt": "csv", ".tsv": "csv", ".xlsx": "xlsx", ".xlsm": "xlsx",
           ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
XLSX_MAX_ROWS = 1_048_575  # Excel's row limit, less the header
XLSX_EXACT_INT = 2**53  # larger whole numbers are written as text: a double would change their last digits
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
    with open(local(path), "rb") as handle:
        while block := handle.read(1 << 20):
            lines += block.count(b"\n")
    return max(0, lines - (kind == "csv"))


def read_chunks(path: str | os.PathLike, chunk_size: int, required: tuple[str, ...] = (),
                sheet: str | None = None, encoding: str = "utf-8-sig") -> Iterator[pd.DataFrame]:
    """Yield DataFrames of at most `chunk_size` rows, in file order. Parquet and JSON lines values
    are plain JSON-able Python values (tasks/engine/values.py), CSV and xlsx values text."""
    path = path if is_url(path) else local(path)
    if not is_file(path):
        raise InputError(f"{path}: no such file")
    kind = file_format(path)
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise InputError(f"{path}: unknown encoding {encoding!r} (e.g. utf-8, cp1252, latin-1)") from None
    if kind == "parquet":
        rows = _parquet_rows(path, chunk_size)
    elif kind == "jsonl":
        rows = _batched(_jsonl_rows(path, encoding), chunk_size, keep_types=True)
    else:
        from tasks.engine.sheets import xlsx_rows

        reader = _csv_rows(path, encoding) if kind == "csv" else xlsx_rows(path, required, sheet=sheet)
        rows = _batched(reader, chunk_size)
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


def _batched(rows: Iterator, size: int, keep_types: bool = False) -> Iterator[pd.DataFrame]:
    """Group a reader's output (its header first, then (row number, values, error) tuples) into
    DataFrames; a file with a header and no rows gives one empty DataFrame with the columns.
    `keep_types`: object columns that keep each value as it is (None where a key is missing)."""
    columns = [*next(rows), "_row", "_input_error"]
    batch: list[dict] = []
    yielded = False
    for number, values, error in rows:
        batch.append({**values, "_row": number, "_input_error": error})
        if len(batch) >= size:
            yield _frame(batch, columns, keep_types)
            batch, yielded = [], True
    if batch or not yielded:
        yield _frame(batch, columns, keep_types)


def _frame(batch: list[dict], columns: list[str], keep_types: bool) -> pd.DataFrame:
    if not keep_types:
        return pd.DataFrame(batch, columns=columns)
    frame = pd.DataFrame({name: pd.Series([row.get(name) for row in batch], dtype=object) for name in columns})
    return frame.astype({"_row": "int64", "_input_error": str})


def unique_names(path: Path, header: list, where: str = "") -> list[str]:
    """The header's names (a blank one is `column_<N>`); a name that appears twice is an error."""
    names = [str(h).strip() if h is not None and str(h).strip() else f"column_{i + 1}" for i, h in enumerate(header)]
    seen = set()
    for name in names:
        if name in seen:
            raise InputError(f"{path}{where}: column {name!r} appears twice in the header")
        seen.add(name)
    return names


def _csv_rows(path: Path, encoding: str):
    with open_input(path, "r", newline="", encoding=encoding, errors="surrogateescape") as handle:
        sample = handle.read(65536)
        if not sample.strip():
            raise InputError(f"{path}: the file is empty (no header row)")
        handle.seek(0)
        header_line = sample.splitlines()[0]
        delimiter = max(",;\t|", key=header_line.count)  # the header tells the delimiter
        reader = csv.reader(handle, delimiter=delimiter)
        header = unique_names(path, next(reader))
        yield header
        number = 0
        while True:
            first_line = reader.line_num + 1
            fields = next(reader, None)
            if fields is None:
                break
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # blank line: not a row
            number += 1
            problems = []
            if len(fields) != len(header):
                problems.append(f"has {len(fields)} fields, the header has {len(header)}")
            lines_before = 0
            for name, value in zip(header, fields):
                if bad := _BAD_BYTES.search(value):
                    line = first_line + lines_before + value.count("\n", 0, bad.start())
                    problems.append(f"column {name}: {undecodable(encoding, ord(bad.group()) - 0xDC00, line)}")
                lines_before += value.count("\n")
            values = {name: _clean_text(value) for name, value in zip(header, fields)}
            where = f"{name_of(path)} row {number} (line {reader.line_num})"
            yield number, values, (f"{where}: " + "; ".join(problems)) if problems else ""


def undecodable(encoding: str, byte: int, line: int) -> str:
    """Why text could not be decoded, and how to fix it."""
    if codecs.lookup(encoding).name in ("utf-8", "utf-8-sig"):
        return (f"not UTF-8 (byte 0x{byte:02x} at line {line}); give the file's encoding, "
                "e.g. --encoding cp1252")
    return f"not {encoding} (byte 0x{byte:02x} at line {line}); give the file's encoding with --encoding"


def _clean_text(value: str) -> str:
    return _BAD_BYTES.sub("\ufffd", value)


def as_text(value: Any) -> str:
    """A cell's value as text: "" for None and NaN (pandas' empty cell), lists and dicts as JSON."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _jsonl_rows(path: Path, encoding: str):
    def records():
        constants: list[str] = []  # NaN, Infinity: not JSON, but Python's json reads them

        def constant(name: str) -> float:
            constants.append(name)
            return float(name)

        with open_input(path, "r", encoding=encoding, errors="surrogateescape") as handle:
            number = 0
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                number += 1
                where = f"{name_of(path)} row {number} (line {line_no})"
                constants.clear()
                try:
                    record = json.loads(_clean_text(line), parse_constant=constant)
                    if not isinstance(record, dict):
                        raise ValueError("a line must hold one JSON object")
                except ValueError as problem:
                    yield number, {}, f"{where}: invalid JSON: {problem}"
                    continue
                if bad := _BAD_BYTES.search(line):
                    yield number, record, f"{where}: {undecodable(encoding, ord(bad.group()) - 0xDC00, line_no)}"
                else:
                    yield number, *(_json_values(record, where) if constants else (record, ""))

    header: dict[str, None] = {}  # a first pass finds every key, so all chunks have the same columns
    for _, record, _ in records():
        header.update(dict.fromkeys(record))
    if not header:
        raise InputError(f"{path}: the file is empty (no JSON objects)")
    yield list(header)
    yield from records()


def _json_values(record: dict[str, Any], where: str) -> tuple[dict[str, Any], str]:
    """A record's values with NaN as None; a value that has no JSON form (infinity) fails the row."""
    values, problems = {}, []
    for name, value in record.items():
        try:
            values[name] = json_value(value)
        except UnmappableValue as error:
            values[name] = None
            problems.append(f"column {name}: {error}")
    return values, (f"{where}: " + "; ".join(problems)) if problems else ""


def _parquet_rows(path: Path, chunk_size: int) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    start = 1
    for batch in pq.ParquetFile(source(path)).iter_batches(batch_size=chunk_size):
        columns, errors = {}, [[] for _ in range(batch.num_rows)]
        for name, column in zip(batch.schema.names, batch.columns):
            columns[name], problems = arrow_column(column)
            for index, problem in problems.items():
                errors[index].append(f"column {name}: {problem}")
        frame = pd.DataFrame(columns, index=range(batch.num_rows))
        frame["_row"] = range(start, start + len(frame))
        frame["_input_error"] = [f"{name_of(path)} row {start + i}: " + "; ".join(e) if e else ""
                                 for i, e in enumerate(errors)]
        start += len(frame)
        yield frame


class OutputWriter:
    """Append DataFrames in order; the file appears (renamed, or committed on object storage) only on
    `close()`, whole (tasks/engine/storage.py)."""

    def __init__(self, path: str | os.PathLike):
        self.path = path if is_url(path) else local(path)
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
        frame = text_ready(frame)
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
        self._handle.write(json_lines(frame))

    def _write_parquet(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(arrow_ready(frame), preserve_index=False)
        if self._parquet is None:
            schema = pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in table.schema])
            self._parquet = pq.ParquetWriter(self.output.sink(), schema)
        try:
            self._parquet.write_table(table.cast(self._parquet.schema))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise ValueError(self._type_change(table)) from None

    def _type_change(self, table) -> str:
        """Which column's values no longer fit the type the file's first rows gave it."""
        for field in self._parquet.schema:
            try:
                table.column(field.name).cast(field.type)
            except (ValueError, NotImplementedError) as error:  # pyarrow's errors derive from these
                return (f"{self.path}: column {field.name} held {field.type} values in the first rows, then "
                        f"{table.schema.field(field.name).type} ({error}); write .csv or .jsonl output "
                        "(a rerun does not send the finished rows again)")
        return f"{self.path}: the columns changed between rows: {table.schema} after {self._parquet.schema}"

    def _write_xlsx(self, frame: pd.DataFrame) -> None:
        from openpyxl import Workbook
        from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

        if self._book is None:
            self._book = Workbook(write_only=True)
            self._new_sheet(list(frame.columns))
        for values in frame.itertuples(index=False, name=None):
            if self._sheet_rows >= XLSX_MAX_ROWS:  # Excel's limit: continue on a new sheet
                self._new_sheet(list(frame.columns))
            cells = [None if v is None or v is pd.NA or (isinstance(v, float) and v != v)
                     else cell_text(v) if isinstance(v, (list, dict))  # as JSON
                     else str(v) if isinstance(v, int) and abs(v) > XLSX_EXACT_INT  # Excel's numbers are doubles
                     else v for v in values]
            self._sheet.append([ILLEGAL_CHARACTERS_RE.sub("", v) if isinstance(v, str) else v for v in cells])
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
