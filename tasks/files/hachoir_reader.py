"""hachoir for the formats it reads well (JPEG, PNG, GIF, AVI, Matroska, ASF, FLV, executables,
archives...). Its guesses are confirmed: a parser counts only when one of its magic strings of at
least 4 bytes matches at its offset, or when the file's extension is one of the parser's; anything
else is `unsupported`. The answer is renamed to stable format names; a PNG's text chunks fill title
and author; a cut PNG, JPEG or GIF gets a note."""
from __future__ import annotations

import itertools
import struct
import sys
from typing import Any

from hachoir.core import config as hachoir_config
from hachoir.core.log import log as hachoir_log
from hachoir.metadata import extractMetadata
from hachoir.parser import guessParser
from hachoir.stream import InputIOStream

from tasks.files.found import Found, Source, cut_note, text
from tasks.files.images import trailer_note

HACHOIR_KEYS = {"width": ("width",), "height": ("height",), "duration_s": ("duration",), "bit_rate": ("bit_rate",),
                "codec": ("compression",), "sample_rate": ("sample_rate",), "channels": ("nb_channel",),
                "frame_rate": ("frame_rate",), "created": ("creation_date", "date_time_original"),
                "author": ("author", "artist"), "producer": ("producer",), "title": ("title",),
                "page_count": ("nb_page",)}
FORMATS = {"riff": "avi", "targa": "tga", "sun_next_snd": "au", "matroska": "mkv", "mpeg_ts": "mpeg-ts",
           "mpeg_video": "mpeg-video", "asf": "asf", "ttf": "ttf", "elf": "elf", "exe": "exe"}
EXPECTS_METADATA = {"png", "jpeg", "gif", "bmp", "tiff", "avi", "mkv", "asf", "flv", "real_media", "ico", "pcx",
                    "tga", "psd", "xcf", "swf", "au"}  # media: no metadata at all means a damaged file
PNG_TEXT = {"Title": "title", "Author": "author", "Creation Time": "created", "Software": "producer"}
MIN_MAGIC = 4


class Messages:
    """hachoir's log, kept instead of printed; notes whether a MemoryError was being handled."""

    def __init__(self, keep: int = 5):
        self.keep, self.errors, self.out_of_memory = keep, [], False

    def clear(self) -> None:
        self.errors, self.out_of_memory = [], False

    def __call__(self, level: int, prefix: str, text: str, context: Any) -> None:
        self.out_of_memory |= sys.exc_info()[0] is MemoryError
        if level >= hachoir_log.LOG_ERROR and len(self.errors) < self.keep:
            self.errors.append(text[:300])


messages = Messages()
hachoir_config.quiet = False  # warnings reach the hook too (a parser that ran out of memory only warns)
hachoir_log.use_print = False
hachoir_log.on_new_message = messages


def _items(metadata: Any) -> dict[str, Any]:
    found = {}
    for data in metadata:
        values = [item.value for item in data.values]
        if values:
            found[data.key] = values[0] if len(values) == 1 else values
    return found


def confirmed(parser: Any, head: bytes, source: Source) -> bool:
    """A strong magic string matches, or the extension is the parser's."""
    tags = parser.PARSER_TAGS
    for entry in tags.get("magic", ()):
        if len(entry) == 2 and len(entry[0]) >= MIN_MAGIC and entry[1] % 8 == 0:
            at = entry[1] // 8
            if at + len(entry[0]) <= len(head) and head[at:at + len(entry[0])] == entry[0]:
                return True
    extension = source.extension.lstrip(".")
    return bool(extension) and extension in [e.lower() for e in tags.get("file_ext") or ()]


def read_with_hachoir(source: Source, head: bytes) -> Found | None:
    """hachoir's parser for the file, on the source's handle (the stream hachoir's createParser would
    make of the file: its name as the source and the filename tag); hachoir's closing is left to the
    caller, who opened the handle."""
    messages.clear()
    stream = InputIOStream(source.handle, source=f"file:{source.name}", tags=[("filename", source.name)])
    parser = guessParser(stream)
    if parser is None:
        if messages.out_of_memory:
            raise MemoryError("out of memory while guessing the format")
        return None
    tag = parser.PARSER_TAGS["id"]
    if tag in ("mpeg_audio", "mpeg_ts") or not confirmed(parser, head, source):
        return None  # MPEG audio and TS are claimed by their own readers only
    metadata = extractMetadata(parser)
    name, mime = type(parser).__name__, str(parser.mime_type)
    if messages.out_of_memory:
        raise MemoryError("out of memory while reading the metadata")
    everything = _items(metadata) if metadata else {}
    groups = getattr(metadata, "_MultipleMetadata__groups", None)  # hachoir has no public accessor for the keys
    if groups:
        everything["groups"] = {key: _items(group) for key, group in groups.items()}
    layers = [everything, *everything.get("groups", {}).values()]
    fields = {field: next((layer[k] for k in keys for layer in layers if k in layer), None)
              for field, keys in HACHOIR_KEYS.items()}
    kind = FORMATS.get(tag, tag)
    if kind == "avi" and "msvideo" not in mime and not mime.endswith("avi"):
        kind = {"audio/x-wav": "wav", "image/x-ani": "ani"}.get(mime, "riff")
    if kind == "mkv" and "webm" in str(everything.get("producer", "")).lower() + mime:
        kind = "webm"
    if kind == "png":
        _png_text(everything, fields)
    kind, mime = _refined(kind, mime, parser, head)
    note = "; ".join(messages.errors) or trailer_note(kind, source) or size_note(kind, source, head)
    if not note and not everything and kind in EXPECTS_METADATA:
        note = "no metadata found (a damaged or cut file?)"
    return Found(kind, mime, f"hachoir:{name}", fields, everything, note)


ELF_TYPES = {1: "application/x-object", 2: "application/x-executable", 3: "application/x-sharedlib",
             4: "application/x-coredump"}  # by e_type (a position-independent executable is type 3)
OLE2_KINDS = {"WordDocument": ("doc", "application/msword"), "Workbook": ("xls", "application/vnd.ms-excel"),
              "Book": ("xls", "application/vnd.ms-excel"), "PowerPoint Document": ("ppt", "application/vnd.ms-powerpoint"),
              "VisioDocument": ("vsd", "application/vnd.visio")}
OLE2_FIELDS = 256  # top-level fields of an OLE2 file looked through for its directory entries


def _refined(kind: str, mime: str, parser: Any, head: bytes) -> tuple[str, str]:
    """A closer name than hachoir's for the kinds it names alike: an ELF file's MIME type by its type
    (hachoir calls every one an executable), a font's by its outline format, an OLE2 file by its
    application (hachoir calls every one a Word document)."""
    if kind == "elf" and len(head) >= 18:
        return kind, ELF_TYPES.get(int.from_bytes(head[16:18], "little" if head[5] == 1 else "big"), mime)
    if kind == "ttf":
        return kind, "font/otf" if head.startswith(b"OTTO") else "font/ttf"
    if kind == "ole2":
        return _ole2_kind(parser)
    return kind, mime


def _ole2_kind(parser: Any) -> tuple[str, str]:
    """Word, Excel, PowerPoint or Visio by the stream its application writes, else a generic compound file."""
    try:
        for field in itertools.islice(parser, OLE2_FIELDS):
            if field.name.startswith("property[") and (stream := str(field["name"].value)) in OLE2_KINDS:
                return OLE2_KINDS[stream]
    except Exception:  # a damaged directory: hachoir's own error is in its log
        pass
    return "ole2", "application/x-ole-storage"


def size_note(kind: str, source: Source, head: bytes) -> str:
    """A note when an AVI's RIFF size or a Matroska segment's size runs past the end of the file."""
    actual = source.size
    if kind == "avi" and len(head) >= 8:
        return cut_note(struct.unpack_from("<I", head, 4)[0] + 8, actual)
    if kind in ("mkv", "webm"):
        at = head.find(b"\x18\x53\x80\x67")  # the Segment element after the EBML header
        if at > 0 and at + 5 <= len(head):
            first = head[at + 4]
            width = 9 - first.bit_length()  # an EBML variable-size integer: its length is in the first byte
            size = int.from_bytes(head[at + 4:at + 4 + width], "big") & ((1 << (7 * width)) - 1)
            if size != (1 << (7 * width)) - 1:  # all ones: unknown size (a live stream)
                return cut_note(at + 4 + width + size, actual)
    return ""


def _png_text(everything: dict[str, Any], fields: dict[str, Any]) -> None:
    """hachoir lists tEXt/iTXt chunks as 'Keyword=value' comments: the known keywords fill fields."""
    comments = everything.get("comment", [])
    for comment in [comments] if isinstance(comments, str) else comments:
        key, _, value = str(comment).partition("=")
        if key in PNG_TEXT and not fields.get(PNG_TEXT[key]):
            fields[PNG_TEXT[key]] = text(value)
