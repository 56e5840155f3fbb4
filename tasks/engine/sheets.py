"""Read an .xlsx sheet as rows of text: find its header (title rows above it are skipped), name
every column (merged or blank header cells included), and never drop a value silently.

- The header is the first of the sheet's first `HEADER_ROWS` rows that has every required column
  (with none required: the first row with at least half as many filled cells as the fullest of
  those rows, so a one-cell title above the header is skipped).
- A header cell covered by a merged range takes the merged name: `Address`, `Address_2`, ...
  (the number is the column's place in the merge); any other blank header cell is `column_<N>`
  (N = the sheet's column number, A = 1). Every column of a merged header cell counts; a blank
  header cell right of the last named one counts when a value is under it in the `LOOKAHEAD_ROWS`
  rows below the header.
- A value further right than the header reaches fails its row, naming the cell.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path
from typing import Any, Iterator, Sequence

from openpyxl.utils import get_column_letter, range_boundaries

from tasks.engine.storage import name_of, source
from tasks.engine.tables import InputError, unique_names
from tasks.engine.values import plain_float

HEADER_ROWS = 20
LOOKAHEAD_ROWS = 20
_MERGE = re.compile(rb'<(?:\w+:)?mergeCell\b[^>]*?\bref="([A-Z]+[0-9]+(?::[A-Z]+[0-9]+)?)"')


@dataclass(frozen=True)
class Merge:
    """A merged range (1-based, inclusive), as in the sheet's `<mergeCell ref="B4:C4">`."""

    first_col: int
    first_row: int
    last_col: int
    last_row: int

    def covers(self, row: int, col: int) -> bool:
        return self.first_row <= row <= self.last_row and self.first_col <= col <= self.last_col


def sheet_text(value: Any) -> str:
    """A sheet cell as the text a CSV export would give: whole numbers without `.0`, floats in
    positional notation, dates in ISO 8601."""
    if value is None:
        return ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else plain_float(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def _filled(cells: Sequence) -> list[int]:
    """1-based columns of the cells that hold a value."""
    return [col for col, value in enumerate(cells, start=1) if sheet_text(value).strip()]


def sheet_merges(book: Any, sheet: Any) -> list[Merge]:
    """The sheet's merged ranges, read from its XML in one streamed pass (read-only mode does not
    parse them; they follow the sheet's rows)."""
    refs, tail = [], b""
    with book._archive.open(sheet._worksheet_path) as xml:  # openpyxl's read-only sheet source
        while block := xml.read(1 << 20):
            text = tail + block
            end = text.rfind(b"<")  # the last tag may be cut by the block's end: searched with the next
            end = len(text) if end < 0 else end
            refs += _MERGE.findall(text, 0, end)
            tail = text[end:]
    return [Merge(*range_boundaries(ref.decode())) for ref in refs + _MERGE.findall(tail)]


class SheetHeader:
    """The header row of a sheet and the names of its columns."""

    def __init__(self, path: Path, book: Any, sheet: Any, top: list[Sequence], index: int, below: list[Sequence]):
        self.path, self.sheet, self.row = path, sheet.title, index + 1  # 1-based sheet row
        cells = top[index]
        width = max([0, *_filled(cells), *(max(_filled(r), default=0) for r in below)])
        merges = [m for m in sheet_merges(book, sheet) if m.first_row <= self.row <= m.last_row]  # ~3 % of a read
        width = max([width, *(m.last_col for m in merges)])
        names = []
        for col in range(1, width + 1):
            value = sheet_text(cells[col - 1]).strip() if col <= len(cells) else ""
            merge = next((m for m in merges if m.covers(self.row, col)), None) if not value else None
            if merge is not None:
                corner = top[merge.first_row - 1]
                base = sheet_text(corner[merge.first_col - 1]).strip() if merge.first_col <= len(corner) else ""
                value = base if not base or col == merge.first_col else f"{base}_{col - merge.first_col + 1}"
            names.append(value or f"column_{col}")
        self.names = unique_names(path, names, f" sheet {self.sheet!r}")

    def where(self, number: int, sheet_row: int) -> str:
        return f"{name_of(self.path)} sheet {self.sheet!r} row {number} (sheet row {sheet_row})"

    def values(self, number: int, sheet_row: int, cells: Sequence) -> tuple[dict[str, str], str]:
        """A data row's values by column name, and its error ("" when none)."""
        extra = [col for col in _filled(cells) if col > len(self.names)]
        error = ""
        if extra:
            cell = f"{get_column_letter(extra[0])}{sheet_row}"
            error = (f"{self.where(number, sheet_row)}: cell {cell} has a value but column "
                     f"{get_column_letter(extra[0])} has no header (row {self.row}); give it one")
        texts = [sheet_text(value) for value in cells[:len(self.names)]]
        return dict(zip(self.names, texts + [""] * (len(self.names) - len(texts)))), error


def _header_index(top: list[Sequence], required: tuple[str, ...]) -> int | None:
    """Which of the first rows is the header (see the module's docstring), or None."""
    counts = [len(_filled(cells)) for cells in top]
    if not required:
        most = max(counts, default=0)
        return next((i for i, n in enumerate(counts) if n and n * 2 >= most), None)
    for index, cells in enumerate(top):
        texts = {sheet_text(value).strip() for value in cells}
        if all(name in texts for name in required):
            return index
    return None


def xlsx_rows(path: Path, required: tuple[str, ...], sheet: str | None = None) -> Iterator:
    """The header's names, then (row number, values, error) per non-empty data row."""
    from openpyxl import load_workbook

    try:
        book = load_workbook(source(path), read_only=True, data_only=True)
    except Exception as error:  # openpyxl raises many kinds for a broken file
        raise InputError(f"{path}: not a readable xlsx file ({type(error).__name__}: {error})") from None
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise InputError(f"{path}: no sheet {sheet!r}; sheets are {book.sheetnames}")
        headers_found = {}  # sheet -> "row N: [its cells]", the row that looks most like a header
        for ws in ([book[sheet]] if sheet is not None else book.worksheets):
            ws.reset_dimensions()  # a wrong <dimension> in the file would cut rows short
            numbered = enumerate(ws.iter_rows(values_only=True), start=1)  # missing rows come as empty ones
            top = [cells for _, cells in islice(numbered, HEADER_ROWS)]
            likely = _header_index(top, ())
            if likely is not None:
                cells = top[likely][:max(_filled(top[likely]))]
                headers_found[ws.title] = f"row {likely + 1}: {[sheet_text(v).strip() for v in cells]}"
            index = _header_index(top, required)
            if index is None:
                continue
            below = list(enumerate(top[index + 1:], start=index + 2))
            below += islice(numbered, max(0, LOOKAHEAD_ROWS - len(below)))
            header = SheetHeader(path, book, ws, top, index, [cells for _, cells in below])
            yield header.names
            number = 0
            for sheet_row, cells in chain(below, numbered):
                if _filled(cells):
                    number += 1
                    yield number, *header.values(number, sheet_row, cells)
            return
        wanted = ", ".join(required)
        if sheet is not None and headers_found:
            raise InputError(f"{path} sheet {sheet!r}: no row in the first {HEADER_ROWS} has the column(s) "
                             f"{wanted}; header found at {headers_found[sheet]}")
        if sheet is not None:
            raise InputError(f"{path} sheet {sheet!r} is empty (no header row)")
        if not headers_found:
            raise InputError(f"{path}: the workbook is empty (no header row on any sheet)")
        raise InputError(f"{path}: no sheet has the column(s) {wanted} in its first {HEADER_ROWS} rows; "
                         f"headers found: {headers_found}")
    finally:
        book.close()
