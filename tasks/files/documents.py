"""Documents and fonts: PDF (pypdf), PostScript and EPS (DSC comments, also behind a DOS binary
header), SVG (the root element through defusedxml: no entity expansion, no external loads), Type 1
fonts (PFA, PFB) and Adobe Font Metrics (AFM)."""
from __future__ import annotations

import datetime as dt
import logging
import re
import struct
from typing import Any

from tasks.files.found import Found, HeaderError, Source, read_at, text

DOS_EPS = b"\xc5\xd0\xd3\xc6"
SVG_UNITS = {"": 1.0, "px": 1.0, "in": 96.0, "cm": 96 / 2.54, "mm": 96 / 25.4, "pt": 96 / 72, "pc": 16.0}
MAX_SVG_ELEMENTS = 200  # elements read looking for the root's <title>


# PDF: document information and page count through pypdf.

def _pdf_date(value: Any) -> str | None:
    match = re.match(r"D:(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?", str(value or ""))
    if not match:
        return str(value) if value else None
    parts = [int(p) if p else d for p, d in zip(match.groups(), (0, 1, 1, 0, 0, 0))]
    return dt.datetime(*parts).isoformat()


def _page_count(reader: Any) -> int:
    """The page tree's /Count (one object read), or the pages counted one by one when it has none."""
    try:
        count = reader.root_object["/Pages"].get_object()["/Count"]
    except (KeyError, TypeError, AttributeError):
        count = None
    return int(count) if isinstance(count, int) and count >= 0 else len(reader.pages)


def read_pdf(source: Source, head: bytes) -> Found:
    """Read strictly first: pypdf's lenient mode checks the header of every object its cross-reference
    table lists, which reads the whole file (of a bucket's object, every block). A file the strict
    read rejects is read again leniently."""
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings about a damaged file: the error says enough
    try:
        return _pdf_found(source, strict=True)
    except MemoryError:
        raise
    except Exception:  # any complaint of the strict read: the lenient one decides
        return _pdf_found(source, strict=False)


def _pdf_found(source: Source, strict: bool) -> Found:
    from pypdf import PdfReader

    reader = PdfReader(source.rewound(), strict=strict)
    note, metadata = "", {"pdf_version": reader.pdf_header.lstrip("%"), "encrypted": reader.is_encrypted}
    if reader.is_encrypted and not reader.decrypt(""):
        return Found("pdf", "application/pdf", "pypdf", {}, metadata, "encrypted: document information not readable")
    info = {str(k).lstrip("/"): str(v) for k, v in (reader.metadata or {}).items()}
    metadata.update(info=info, pages=_page_count(reader))
    fields = {"title": info.get("Title") or None, "author": info.get("Author") or None,
              "producer": info.get("Producer") or info.get("Creator") or None,
              "created": _pdf_date(info.get("CreationDate")), "page_count": metadata["pages"]}
    return Found("pdf", "application/pdf", "pypdf", fields, metadata, note)


# PostScript / EPS: the header comments up to %%EndComments (DSC).

def read_postscript(source: Source, head: bytes, max_bytes: int = 64 << 10) -> Found:
    offset, length = 0, max_bytes
    if head.startswith(DOS_EPS):
        offset, size = struct.unpack_from("<II", head, 4)
        length = min(size, max_bytes)
    data = read_at(source, offset, length)
    if not data.startswith(b"%!"):
        raise HeaderError("damaged EPS: no PostScript where the DOS header points")
    comments: dict[str, str] = {}
    for line in re.split(rb"\r\n|\r|\n", data):
        if line.startswith(b"%%EndComments") or (comments and not line.startswith(b"%")):
            break
        match = re.match(rb"%%(\w+):\s*(.*)", line)
        if match and match.group(1).decode() not in comments:
            comments[match.group(1).decode()] = match.group(2).decode("latin-1").strip()
    first = data.split(b"\n", 1)[0]
    eps = b"EPSF" in first or head.startswith(DOS_EPS)
    box = re.fullmatch(r"(-?[\d.]+)\s+(-?[\d.]+)\s+(-?[\d.]+)\s+(-?[\d.]+)", comments.get("BoundingBox", ""))
    width = height = None
    if box:
        x1, y1, x2, y2 = (float(v) for v in box.groups())
        width, height = round(x2 - x1), round(y2 - y1)
    pages = comments.get("Pages", "")
    fields = {"width": width, "height": height, "title": _ps_text(comments.get("Title")),
              "author": _ps_text(comments.get("For")), "producer": _ps_text(comments.get("Creator")),
              "created": _ps_text(comments.get("CreationDate")),
              "page_count": int(pages) if pages.isdigit() and not eps else None}
    metadata = {"header": first.decode("latin-1").strip(), "comments": comments}
    return Found("eps" if eps else "ps", "application/postscript", "postscript-dsc", fields, metadata)


def _ps_text(value: str | None) -> str | None:
    """A DSC text value: PostScript string parentheses removed."""
    value = text(value)
    if value and value.startswith("(") and value.endswith(")"):
        value = text(value[1:-1])
    return value


# SVG: width, height and viewBox of the root element, and its <title>.

def looks_like_svg(head: bytes) -> bool:
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return start.startswith((b"<?xml", b"<!--", b"<!DOCTYPE", b"<svg")) and re.search(rb"<svg[\s>]", head) is not None


def svg_length(value: str | None) -> int | None:
    """An SVG length in CSS pixels (96 per inch); None for percentages and the unreadable."""
    match = re.fullmatch(r"\s*([\d.]+(?:e[+-]?\d+)?)\s*([a-z]*)\s*", value or "", re.I)
    if not match or match.group(2).lower() not in SVG_UNITS:
        return None
    return round(float(match.group(1)) * SVG_UNITS[match.group(2).lower()])


def read_svg(source: Source, head: bytes) -> Found | None:
    from xml.etree.ElementTree import ParseError

    from defusedxml.ElementTree import iterparse

    root, title, seen = None, None, 0
    try:
        for event, element in iterparse(source.rewound(), events=("start", "end")):
            seen += 1
            if root is None:
                if element.tag.rsplit("}", 1)[-1] != "svg":
                    return None  # XML, not SVG
                root = dict(element.attrib)
            elif event == "end" and element.tag.rsplit("}", 1)[-1] == "title":
                title = text(element.text)
                break
            if seen > MAX_SVG_ELEMENTS:
                break
    except ParseError as error:
        if root is None:
            raise HeaderError(f"damaged SVG: {error}") from None
    view_box = [float(v) for v in re.split(r"[\s,]+", root.get("viewBox", "").strip()) if v][:4]
    width, height = svg_length(root.get("width")), svg_length(root.get("height"))
    if (width is None or height is None) and len(view_box) == 4:
        width, height = round(view_box[2]), round(view_box[3])
    fields = {"width": width, "height": height, "title": title}
    metadata = {key: root[key] for key in ("width", "height", "viewBox", "version") if key in root}
    return Found("svg", "image/svg+xml", "svg-root", fields, metadata)


# Type 1 fonts: the clear-text part of a PFA, or of a PFB's first segment; AFM: its header keys.

def read_type1(source: Source, head: bytes) -> Found:
    pfb = head.startswith(b"\x80\x01")
    if pfb:
        size = struct.unpack_from("<I", head, 2)[0]
        clear = read_at(source, 6, min(size, 64 << 10))
    else:
        clear = read_at(source, 0, 64 << 10)
    clear = clear.split(b"eexec", 1)[0].decode("latin-1")
    keys = dict(re.findall(r"/(FontName|FullName|FamilyName|Weight|Notice|version)\s+[/(]([^)\n]*)", clear))
    created = re.search(r"%%CreationDate:\s*(.+)", clear)
    title = re.search(r"%%Title:\s*(.+)", clear)
    fields = {"title": text(title.group(1)) if title else keys.get("FontName"),
              "created": _font_date(created.group(1)) if created else None, "producer": text(keys.get("Notice"))}
    return Found("pfb" if pfb else "pfa", "application/x-font-type1", "type1-header", fields,
                 {"header": clear.split("\n", 1)[0].strip(), **keys})


def read_afm(source: Source, head: bytes) -> Found:
    keys: dict[str, str] = {}
    for line in read_at(source, 0, 64 << 10).decode("latin-1").splitlines():
        if line.startswith(("StartCharMetrics", "EndFontMetrics")):
            break
        key, _, value = line.partition(" ")
        if key and key not in keys:
            keys[key] = value.strip()
    created = re.match(r"Creation Date:\s*(.+)", keys.get("Comment", ""))
    fields = {"title": keys.get("FullName") or keys.get("FontName"), "producer": text(keys.get("Notice")),
              "created": _font_date(created.group(1)) if created else None}
    return Found("afm", "application/x-font-afm", "afm-header", fields, keys)


def _font_date(value: str) -> str | None:
    try:
        return dt.datetime.strptime(value.strip(), "%a %b %d %H:%M:%S %Y").isoformat()
    except ValueError:
        return text(value)
