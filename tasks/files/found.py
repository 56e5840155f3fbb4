"""What every reader returns (`Found`) or raises (`HeaderError`), and small helpers they share."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any


class HeaderError(ValueError):
    """The file starts like the format but its header is damaged or cut short."""


@dataclass
class Found:
    """What a reader found: the format, the common fields it knows, and everything it read."""

    format: str
    mime: str
    parser: str
    fields: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    note: str = ""  # a problem that did not stop the read (e.g. a cut file)


def read_at(path: str, offset: int, size: int) -> bytes:
    """`size` bytes from `offset` (from the end when negative), fewer at the end of the file."""
    with open(path, "rb") as handle:
        handle.seek(offset, os.SEEK_SET if offset >= 0 else os.SEEK_END)
        return handle.read(size)


def tail(path: str, size: int) -> bytes:
    """The last `size` bytes of the file (all of it when it is smaller)."""
    with open(path, "rb") as handle:
        handle.seek(max(0, os.fstat(handle.fileno()).st_size - size))
        return handle.read(size)


def cut_note(declared: int, actual: int) -> str:
    """The note for a file shorter than its header says ('' when it is not)."""
    if declared <= actual:
        return ""
    return f"cut file? the header declares {declared:,} bytes, the file has {actual:,}"


def text(value: Any) -> str | None:
    """A text value stripped of blanks and NULs; None when nothing is left."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    value = str(value).strip().strip("\x00").strip()
    return value or None
