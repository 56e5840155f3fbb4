"""What every reader reads (`Source`), returns (`Found`) or raises (`HeaderError`), and small helpers
they share."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, BinaryIO


class HeaderError(ValueError):
    """The file starts like the format but its header is damaged or cut short."""


@dataclass(frozen=True)
class Source:
    """The file a reader reads: a seekable binary file open for reading (a local file, or an object of a
    bucket read in ranges as the readers touch it), its name (a path or URL: for readers that go by
    the extension) and its size in bytes. Every reader seeks before it reads."""

    handle: BinaryIO
    name: str
    size: int

    @property
    def extension(self) -> str:
        """The name's extension, lower case with its dot ("" when it has none)."""
        return os.path.splitext(self.name)[1].lower()

    def rewound(self) -> BinaryIO:
        """The handle at the start of the file (for the libraries that read from where it stands)."""
        self.handle.seek(0)
        return self.handle


@dataclass
class Found:
    """What a reader found: the format, the common fields it knows, and everything it read."""

    format: str
    mime: str
    parser: str
    fields: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    note: str = ""  # a problem that did not stop the read (e.g. a cut file)


def read_at(source: Source, offset: int, size: int) -> bytes:
    """`size` bytes from `offset` (from the end when negative), fewer at the end of the file."""
    source.handle.seek(offset if offset >= 0 else max(0, source.size + offset))
    return source.handle.read(size)


def tail(source: Source, size: int) -> bytes:
    """The last `size` bytes of the file (all of it when it is smaller)."""
    return read_at(source, max(0, source.size - size), size)


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
