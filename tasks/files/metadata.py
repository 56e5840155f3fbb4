"""One file's metadata: format, MIME type, the parser used, a flat set of common fields and the full
metadata as JSON. The readers of tasks/files/headers.py take the formats they recognise by structure
(with mutagen, Pillow, pypdf, h5py or a few lines of struct); hachoir reads the rest
(tasks/files/hachoir_reader.py), its guesses confirmed. A file no reader claims is `unsupported`.

`extract(path)` is what the parser processes of tasks/files/sandbox.py run: on a hostile file it may loop
or eat memory, and the sandbox stops it. A bucket's object (`extract(url, size, cap)`) is opened there
too, read in ranges as the readers touch it (tasks/files/objects.py), so the timeout and the memory cap
cover the reads. A MemoryError that hachoir swallows (its extractor catches
every exception) is raised again, so a memory cap is reported as such.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
from typing import Any

from tasks.engine import storage
from tasks.files.found import Found, HeaderError, Source, read_at
from tasks.files.hachoir_reader import read_with_hachoir
from tasks.files.headers import HEAD_BYTES, readers_for

VERSION = "2"  # change when the same file should give a different answer
FIELDS = ("format", "mime", "parser", "width", "height", "duration_s", "bit_rate", "codec", "sample_rate",
          "channels", "frame_rate", "created", "author", "producer", "title", "page_count")
INTEGERS, NUMBERS = ("width", "height", "channels", "page_count"), ("duration_s", "bit_rate", "sample_rate", "frame_rate")
MAX_TEXT = 2000  # characters kept of one metadata value
UNSET_DATES = ("0000", "1904-01-01T00:00:00", "1970-01-01T00:00:00", "1601-01-01T00:00:00")  # zero in some epoch


def extract(path: str, size: int = 0, cap: int = 0) -> dict[str, Any]:
    """{status: ok | unsupported | failed, error, the FIELDS, metadata_json} for one file: a local
    path, or the URL of a bucket's object of `size` bytes (as listed), read in ranges of which at
    most `cap` bytes may be fetched; its answer has `read_cap_reached` too, and its metadata the
    bytes and requests it cost (`bucket_read`)."""
    if not storage.is_url(path):
        try:
            with open(path, "rb") as handle:
                return describe(Source(handle, path, os.fstat(handle.fileno()).st_size))
        except OSError as error:  # describe answers its own: this is the file that cannot be opened
            return _answer("failed", error.strerror or str(error))
    from tasks.files.objects import open_object

    try:
        source, reads = open_object(path, size, cap)
    except storage.StorageError as error:
        return {**_answer("failed", str(error)), "read_cap_reached": False}
    with source.handle:
        answer = describe(source)
    if reads.problem:  # a failed read, which a library may have swallowed, decides
        answer = _answer("failed", reads.problem)
    answer["metadata_json"] = json.dumps({**json.loads(answer["metadata_json"]), "bucket_read": reads.report},
                                         ensure_ascii=False)
    return {**answer, "read_cap_reached": reads.capped}


def describe(source: Source) -> dict[str, Any]:
    """extract's answer for an open file."""
    try:
        head = read_at(source, 0, HEAD_BYTES)
        if not head:
            return _answer("unsupported", "empty file (0 bytes)")
        found = None
        for reader in readers_for(head, source):
            found = reader(source, head)
            if found:
                break
        found = found or read_with_hachoir(source, head)
    except MemoryError:
        raise
    except OSError as error:
        return _answer("failed", error.strerror or str(error))
    except HeaderError as error:
        return _answer("failed", str(error))
    except Exception as error:  # a parser's complaint about a damaged file (pypdf, h5py, Pillow ...)
        return _answer("failed", f"{type(error).__name__}: {error}"[:300])
    if found is None:
        return _answer("unsupported", "unknown format")
    return _answer("ok", found.note, found)


def _answer(status: str, error: str, found: Found | None = None) -> dict[str, Any]:
    answer = {"status": status, "error": error, **dict.fromkeys(FIELDS)}
    if found is not None:
        answer.update({k: _typed(k, v) for k, v in found.fields.items() if k in FIELDS},
                      format=found.format, mime=found.mime, parser=found.parser)
    answer["metadata_json"] = json.dumps(_plain(found.metadata), ensure_ascii=False) if found else "{}"
    return answer


def _typed(name: str, value: Any) -> int | float | str | None:
    """A common field as its column's type (whole numbers, numbers or text); None if it is not one,
    and for a date that is zero in its epoch (1904, 1970, 1601: a field the writer left unset)."""
    if value is None or name not in (*INTEGERS, *NUMBERS):
        shown = None if value is None else str(_plain(value)).strip()
        return None if not shown or name == "created" and shown.startswith(UNSET_DATES) else shown
    try:
        number = float(value.total_seconds() if isinstance(value, dt.timedelta) else value)
    except (TypeError, ValueError):
        return None
    if name in INTEGERS:
        return int(number) if number.is_integer() else None
    return number if math.isfinite(number) else None


def _plain(value: Any) -> Any:
    """A metadata value as JSON: dates as ISO text, durations in seconds, long text cut."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "…"
