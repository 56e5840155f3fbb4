"""ZIP and the formats built on it (Office Open XML, OpenDocument, EPUB, JAR, APK, wheels), read from
the central directory: sizes come from it, never from local headers (whose sizes are zero when a
data descriptor follows the data). At most MAX_ENTRIES entries are read, so a huge archive is
summarised in bounded time, always the same way. Office properties (docProps/core.xml, app.xml) are
inflated from their local entries with a size cap."""
from __future__ import annotations

import datetime as dt
import struct
import zlib
from dataclasses import dataclass
from xml.etree.ElementTree import ParseError

from tasks.files.found import Found, HeaderError, Source, read_at, tail

MAX_ENTRIES = 20_000
LISTED = 50  # entries named in the metadata
MAX_PART = 1 << 20  # bytes of an XML part read
OOXML_KINDS = {"word/document.xml": ("docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
               "xl/workbook.xml": ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
               "ppt/presentation.xml": ("pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation")}
MIMETYPE_KINDS = {"application/epub+zip": "epub", "application/vnd.oasis.opendocument.text": "odt",
                  "application/vnd.oasis.opendocument.spreadsheet": "ods",
                  "application/vnd.oasis.opendocument.presentation": "odp",
                  "application/vnd.oasis.opendocument.graphics": "odg"}


@dataclass(frozen=True)
class Entry:
    name: str
    method: int
    flags: int
    compressed: int
    size: int
    offset: int
    modified: str | None


def _dos_time(date: int, time: int) -> str | None:
    try:
        return dt.datetime(1980 + (date >> 9), (date >> 5) & 15, date & 31, time >> 11, (time >> 5) & 63,
                           (time & 31) * 2).isoformat()
    except ValueError:
        return None


def _directory(source: Source) -> tuple[int, int, int, bytes]:
    """(entries, central directory size, its offset, archive comment) from the end records."""
    end = tail(source, 65_557)
    at = end.rfind(b"PK\x05\x06")
    if at < 0 or len(end) - at < 22:
        raise HeaderError("damaged or cut ZIP: no end of central directory record")
    _, _, _, total, size, offset, comment_length = struct.unpack_from("<HHHHIIH", end, at + 4)
    comment = end[at + 22:at + 22 + comment_length]
    locator = end.rfind(b"PK\x06\x07", 0, at)
    if locator >= 0 and (0xFFFFFFFF in (size, offset) or total == 0xFFFF):  # ZIP64
        record = struct.unpack_from("<Q", end, locator + 8)[0]
        z64 = read_at(source, record, 56)
        if z64[:4] != b"PK\x06\x06":
            raise HeaderError("damaged ZIP64 end of central directory record")
        total, size, offset = struct.unpack_from("<QQQ", z64, 32)
    shift = source.size - len(end) + at - size - offset  # data in front of the archive (self-extracting)
    return total, size, offset + max(shift, 0), comment


def _entries(source: Source, offset: int, size: int, count: int) -> list[Entry]:
    data = read_at(source, offset, min(size, count * 1024 + 46 * count))
    entries, at = [], 0
    while len(entries) < count and at + 46 <= len(data) and data[at:at + 4] == b"PK\x01\x02":
        (flags, method, time, date, _, compressed, size_, name_length, extra_length, comment_length,
         _, _, _, local) = struct.unpack_from("<8xHHHHIIIHHHHHII", data, at)
        name = data[at + 46:at + 46 + name_length].decode("utf-8" if flags & 0x800 else "cp437", "replace")
        extra = data[at + 46 + name_length:at + 46 + name_length + extra_length]
        compressed, size_, local = _zip64_sizes(extra, compressed, size_, local)
        entries.append(Entry(name, method, flags, compressed, size_, local, _dos_time(date, time)))
        at += 46 + name_length + extra_length + comment_length
    return entries


def _zip64_sizes(extra: bytes, compressed: int, size: int, local: int) -> tuple[int, int, int]:
    at = 0
    while at + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, at)
        if kind == 1:
            values, pos = [], at + 4
            for value in (size, compressed, local):
                if value == 0xFFFFFFFF and pos + 8 <= at + 4 + length:
                    values.append(struct.unpack_from("<Q", extra, pos)[0])
                    pos += 8
                else:
                    values.append(value)
            return values[1], values[0], values[2]
        at += 4 + length
    return compressed, size, local


def _member(source: Source, entry: Entry, limit: int = MAX_PART) -> bytes:
    """An entry's data (stored or deflated), at most `limit` bytes inflated."""
    local = read_at(source, entry.offset, 30)
    if local[:4] != b"PK\x03\x04":
        raise HeaderError(f"damaged ZIP: no local header for {entry.name}")
    name_length, extra_length = struct.unpack_from("<HH", local, 26)
    raw = read_at(source, entry.offset + 30 + name_length + extra_length, min(entry.compressed, limit * 4))
    if entry.method == 0:
        return raw[:limit]
    if entry.method == 8:
        return zlib.decompressobj(-15).decompress(raw, limit)
    raise HeaderError(f"{entry.name}: compression method {entry.method} not read")


def _xml_part(source: Source, entry: Entry | None) -> dict[str, str]:
    """The simple elements of a small XML part by local name ({} when the part is missing)."""
    from defusedxml.ElementTree import fromstring

    if entry is None:
        return {}
    try:
        root = fromstring(_member(source, entry))
    except ParseError as error:
        raise HeaderError(f"damaged {entry.name}: {error}") from None
    return {element.tag.rsplit("}", 1)[-1]: element.text.strip() for element in root.iter()
            if element is not root and element.text and element.text.strip() and len(element) == 0}


def _kind(source: Source, names: dict[str, Entry], first: Entry | None) -> tuple[str, str]:
    if "[Content_Types].xml" in names:
        return next((OOXML_KINDS[n] for n in OOXML_KINDS if n in names), ("ooxml", "application/zip"))
    if first is not None and first.name == "mimetype" and first.size < 200:
        mime = _member(source, first, 200).decode("ascii", "replace").strip()
        return MIMETYPE_KINDS.get(mime, "zip"), mime or "application/zip"
    if "AndroidManifest.xml" in names:
        return "apk", "application/vnd.android.package-archive"
    if "META-INF/MANIFEST.MF" in names:
        return "jar", "application/java-archive"
    if any(name.endswith(".dist-info/WHEEL") for name in names):
        return "whl", "application/zip"
    return "zip", "application/zip"


def read_zip(source: Source, head: bytes) -> Found:
    total, size, offset, comment = _directory(source)
    entries = _entries(source, offset, size, min(total, MAX_ENTRIES))
    if total and not entries:
        raise HeaderError("damaged ZIP: the central directory is not where the end record says")
    names = {entry.name: entry for entry in entries}
    kind, mime = _kind(source, names, entries[0] if entries else None)
    metadata = {"entries": total, "entries_read": len(entries),
                "uncompressed_size": sum(e.size for e in entries), "compressed_size": sum(e.compressed for e in entries),
                "encrypted": any(e.flags & 1 for e in entries), "comment": comment.decode("utf-8", "replace"),
                "first_entries": [{"name": e.name, "size": e.size, "compressed": e.compressed, "modified": e.modified}
                                  for e in entries[:LISTED]]}
    note = f"sizes summed over the first {len(entries):,} of {total:,} entries" if len(entries) < total else ""
    fields: dict = {}
    if kind in ("docx", "xlsx", "pptx", "ooxml"):
        core, app = _xml_part(source, names.get("docProps/core.xml")), _xml_part(source, names.get("docProps/app.xml"))
        pages = app.get("Pages") or app.get("Slides")
        fields = {"title": core.get("title"), "author": core.get("creator"), "created": core.get("created"),
                  "producer": " ".join(filter(None, (app.get("Application"), app.get("AppVersion")))) or None,
                  "page_count": int(pages) if pages and pages.isdigit() else None}
        metadata.update(core=core, app=app)
    parser = "ooxml-properties" if kind in ("docx", "xlsx", "pptx", "ooxml") else "zip-directory"
    return Found(kind, mime, parser, fields, metadata, note)


# Unix ar archives: static libraries (.a) and Debian packages (.deb), a 60-byte header per member.

AR_MAGIC, THIN_AR_MAGIC = b"!<arch>\n", b"!<thin>\n"
AR_HEADER = 60


def read_ar(source: Source, head: bytes) -> Found:
    """Member count and names from the headers (at most MAX_ENTRIES); a Debian package when its
    first member is `debian-binary`."""
    thin, offset, members, total = head.startswith(THIN_AR_MAGIC), len(AR_MAGIC), [], 0
    while offset + AR_HEADER <= source.size and len(members) < MAX_ENTRIES:
        header = read_at(source, offset, AR_HEADER)
        if len(header) < AR_HEADER or header[58:60] != b"`\n":
            raise HeaderError(f"damaged ar archive: no member header at byte {offset:,}")
        try:
            size = int(header[48:58].decode("ascii").strip() or 0)
        except ValueError:
            raise HeaderError(f"damaged ar archive: a member size at byte {offset + 48:,} is not a number") from None
        members.append(header[:16].decode("latin-1").rstrip())
        total += size
        data = 0 if thin and members[-1] not in ("/", "//") else size  # a thin archive's members live elsewhere
        offset += AR_HEADER + data + (data & 1)
    named = [name.rstrip("/") for name in members if name not in ("/", "//", "/SYM64/")]
    debian = bool(named) and named[0] == "debian-binary"
    metadata = {"members": len(named), "members_size": total, "thin": thin, "first_members": named[:LISTED]}
    note = f"members counted up to the first {MAX_ENTRIES:,}" if len(members) == MAX_ENTRIES else ""
    if debian:
        return Found("deb", "application/vnd.debian.binary-package", "ar-headers", {}, metadata, note)
    return Found("ar", "application/x-archive", "ar-headers", {}, metadata, note)
