"""One file's metadata: format, MIME type, the parser used, a flat set of common fields and the full
metadata as JSON. hachoir (`createParser` + `extractMetadata`) reads every format it has a metadata
extractor for; tasks/files/headers.py reads FITS, HDF5/NetCDF, DICOM, PDF and Office files, which it lacks.

`extract(path)` is what the parser processes of tasks/files/sandbox.py run: on a hostile file it may loop
or eat memory, and the sandbox stops it. A MemoryError that hachoir swallows (its extractor catches
every exception) is raised again here, so a memory cap is reported as such.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import mimetypes
import sys
from typing import Any

from hachoir.core import config as hachoir_config
from hachoir.core.log import log as hachoir_log
from hachoir.metadata import extractMetadata
from hachoir.parser import createParser

from tasks.files.headers import HEAD_BYTES, Found, HeaderError, reader_for

VERSION = "1"  # change when the same file should give a different answer
FIELDS = ("format", "mime", "parser", "width", "height", "duration_s", "bit_rate", "codec", "sample_rate",
          "channels", "frame_rate", "created", "author", "producer", "title", "page_count")
HACHOIR_KEYS = {"width": ("width",), "height": ("height",), "duration_s": ("duration",), "bit_rate": ("bit_rate",),
                "codec": ("compression",), "sample_rate": ("sample_rate",), "channels": ("nb_channel",),
                "frame_rate": ("frame_rate",), "created": ("creation_date", "date_time_original"),
                "author": ("author", "artist"), "producer": ("producer",), "title": ("title",),
                "page_count": ("nb_page",)}
INTEGERS, NUMBERS = ("width", "height", "channels", "page_count"), ("duration_s", "bit_rate", "sample_rate", "frame_rate")
CONTAINERS = {"riff", "mov", "ogg"}  # hachoir parser ids whose MIME type tells the format better (wav, avi, mp4)
MAX_TEXT = 2000  # characters kept of one metadata value
_MIME = mimetypes.MimeTypes(filenames=())  # the built-in table only: the same answer on every machine


class _Messages:
    """hachoir's log, kept instead of printed; notes whether a MemoryError was being handled."""

    def __init__(self, keep: int = 5):
        self.keep, self.errors, self.out_of_memory = keep, [], False

    def clear(self) -> None:
        self.errors, self.out_of_memory = [], False

    def __call__(self, level: int, prefix: str, text: str, context: Any) -> None:
        self.out_of_memory |= sys.exc_info()[0] is MemoryError
        if level >= hachoir_log.LOG_ERROR and len(self.errors) < self.keep:
            self.errors.append(text[:300])


_messages = _Messages()
hachoir_config.quiet = False  # warnings reach the hook too (a parser that ran out of memory only warns)
hachoir_log.use_print = False
hachoir_log.on_new_message = _messages


def extract(path: str) -> dict[str, Any]:
    """{status: ok | unsupported | failed, error, the FIELDS, metadata_json} for one file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
        if not head:
            return _answer("unsupported", "empty file (0 bytes)")
        reader = reader_for(head)
        found = (reader(path, head) if reader else None) or _hachoir(path)
    except MemoryError:
        raise
    except OSError as error:
        return _answer("failed", error.strerror or str(error))
    except HeaderError as error:
        return _answer("failed", str(error))
    except Exception as error:  # a parser's complaint about a damaged file (pypdf, zipfile, h5py ...)
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
    """A common field as its column's type (whole numbers, numbers or text); None if it is not one."""
    if value is None or name not in (*INTEGERS, *NUMBERS):
        return None if value is None else str(_plain(value))
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


def _items(metadata: Any) -> dict[str, Any]:
    found = {}
    for data in metadata:
        values = [item.value for item in data.values]
        if values:
            found[data.key] = values[0] if len(values) == 1 else values
    return found


def _hachoir(path: str) -> Found | None:
    _messages.clear()
    parser = createParser(path)
    if parser is None:
        if _messages.out_of_memory:
            raise MemoryError("out of memory while guessing the format")
        return None
    with parser:
        metadata = extractMetadata(parser)
        name, mime, tag = type(parser).__name__, str(parser.mime_type), parser.PARSER_TAGS["id"]
    if _messages.out_of_memory:
        raise MemoryError("out of memory while reading the metadata")
    everything = _items(metadata) if metadata else {}
    groups = getattr(metadata, "_MultipleMetadata__groups", None)  # hachoir has no public accessor for the keys
    if groups:
        everything["groups"] = {key: _items(group) for key, group in groups.items()}
    layers = [everything, *everything.get("groups", {}).values()]
    fields = {field: next((layer[k] for k in keys for layer in layers if k in layer), None)
              for field, keys in HACHOIR_KEYS.items()}
    extension = _MIME.guess_extension(mime) if tag in CONTAINERS else None
    note = "; ".join(_messages.errors) or ("" if everything else "no metadata found (a damaged or cut file?)")
    return Found(extension.lstrip(".") if extension else tag, mime, f"hachoir:{name}", fields, everything, note)
