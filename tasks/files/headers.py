"""Small header readers for the formats hachoir has no metadata for: FITS, HDF5 (and NetCDF-4),
classic NetCDF, DICOM, PDF (pypdf) and Office Open XML (.docx/.xlsx/.pptx core properties).

Each reader takes the path and the file's first bytes and returns a `Found` (or None when the file
is not what its signature suggested); it raises `HeaderError` for a damaged header. The readers
written here read at most a few hundred kilobytes; pypdf and h5py read what they need.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import struct
import zipfile
from dataclasses import dataclass, field
from typing import Any, Callable
from xml.etree import ElementTree

from pypdf import PdfReader

try:  # the optional hdf5 extra: top-level attributes of HDF5 and NetCDF-4 files
    import h5py
except ImportError:
    h5py = None

HEAD_BYTES = 4096
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


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
    note: str = ""  # a problem that did not stop the read


def reader_for(head: bytes) -> Callable[[str, bytes], Found | None] | None:
    """The header reader for a file starting with `head`, or None (hachoir's turn)."""
    if head.startswith(b"SIMPLE  ="):
        return read_fits
    if hdf5_offset(head) is not None:
        return read_hdf5
    if head[:4] in (b"CDF\x01", b"CDF\x02", b"CDF\x05"):
        return read_netcdf
    if head[128:132] == b"DICM":
        return read_dicom
    if b"%PDF-" in head[:1024]:
        return read_pdf
    if head.startswith(b"PK\x03\x04"):
        return read_ooxml
    return None


# FITS: 80-character "KEYWORD = value / comment" cards in 2880-byte blocks, up to END.

def _fits_value(text: str) -> Any:
    text = text.strip()
    if text.startswith("'"):
        return re.match(r"'((?:[^']|'')*)'", text + "'").group(1).replace("''", "'").rstrip()
    text = text.split("/", 1)[0].strip()
    if text in ("T", "F"):
        return text == "T"
    for kind in (int, float):
        try:
            return kind(text.replace("D", "E")) if kind is float else kind(text)
        except ValueError:
            pass
    return text


def read_fits(path: str, head: bytes, max_blocks: int = 100) -> Found:
    cards: dict[str, Any] = {}
    with open(path, "rb") as handle:
        for _ in range(max_blocks):
            block = handle.read(2880)
            if len(block) < 2880:
                raise HeaderError("truncated FITS header (no END card)")
            for start in range(0, 2880, 80):
                card = block[start:start + 80].decode("ascii", "replace")
                key = card[:8].strip()
                if key == "END":
                    return _fits_found(cards)
                if card[8:10] == "= ":
                    cards[key] = _fits_value(card[10:])
                elif key in ("COMMENT", "HISTORY"):
                    cards.setdefault(key, []).append(card[8:].strip())
    raise HeaderError(f"FITS header longer than {max_blocks} blocks")


def _fits_found(cards: dict[str, Any]) -> Found:
    first = lambda *keys: next((cards[k] for k in keys if k in cards), None)  # noqa: E731
    fields = {"width": first("NAXIS1"), "height": first("NAXIS2"), "created": first("DATE-OBS", "DATE"),
              "author": first("AUTHOR", "OBSERVER"), "producer": first("ORIGIN", "TELESCOP", "INSTRUME"),
              "title": first("OBJECT")}
    return Found("fits", "image/fits", "fits-header", fields, cards)


# HDF5 (NetCDF-4 files are HDF5): the signature at 0, 512, 1024 or 2048 (after a user block).

def hdf5_offset(head: bytes) -> int | None:
    return next((at for at in (0, 512, 1024, 2048) if head[at:at + 8] == HDF5_SIGNATURE), None)


def read_hdf5(path: str, head: bytes) -> Found:
    at = hdf5_offset(head)
    metadata: dict[str, Any] = {"superblock_version": head[at + 8] if len(head) > at + 8 else None, "user_block": at}
    if h5py is None:
        metadata["attributes"] = "not read: install the hdf5 extra (h5py)"
    else:
        with h5py.File(path, "r") as source:
            metadata["attributes"] = {str(k): _plain(v) for k, v in list(source.attrs.items())[:200]}
            metadata["members"] = list(source.keys())[:200]
    attrs = metadata["attributes"] if isinstance(metadata["attributes"], dict) else {}
    netcdf = "_NCProperties" in attrs or path.lower().endswith((".nc", ".nc4", ".cdf"))
    fields = {"title": attrs.get("title"), "author": attrs.get("author") or attrs.get("creator_name"),
              "producer": attrs.get("institution") or attrs.get("source"), "created": attrs.get("date_created")}
    return Found("netcdf4" if netcdf else "hdf5", "application/x-netcdf" if netcdf else "application/x-hdf5",
                 "hdf5-header+h5py" if h5py else "hdf5-header", fields, metadata)


def _plain(value: Any) -> Any:
    """numpy scalars, arrays and bytes from h5py as JSON-friendly values."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list):
        return [_plain(v) for v in value[:100]]
    return value


# Classic NetCDF (CDF-1, CDF-2 64-bit offsets, CDF-5): XDR header with dimensions, attributes, variables.

NC_TYPES = {1: ("b", 1), 2: ("c", 1), 3: ("h", 2), 4: ("i", 4), 5: ("f", 4), 6: ("d", 8),
            7: ("B", 1), 8: ("H", 2), 9: ("I", 4), 10: ("q", 8), 11: ("Q", 8)}


class _Xdr:
    def __init__(self, data: bytes, version: int):
        self.data, self.at, self.version, self.wide = data, 4, version, version == 5

    def take(self, size: int) -> bytes:
        if self.at + size > len(self.data):
            raise HeaderError("truncated NetCDF header")
        chunk, self.at = self.data[self.at:self.at + size], self.at + size + (-size % 4)
        return chunk

    def count(self) -> int:
        return struct.unpack(">q" if self.wide else ">i", self.take(8 if self.wide else 4))[0]

    def name(self) -> str:
        return self.take(self.count()).decode("utf-8", "replace")

    def items(self, tag: int, read_one: Callable[[], Any]) -> list:
        found, n = struct.unpack(">i", self.take(4))[0], self.count()
        if found not in (0, tag) or n < 0 or n > 100_000:
            raise HeaderError("damaged NetCDF header")
        return [read_one() for _ in range(n)]

    def attribute(self) -> tuple[str, Any]:
        name, kind = self.name(), struct.unpack(">i", self.take(4))[0]
        if kind not in NC_TYPES:
            raise HeaderError(f"unknown NetCDF type {kind}")
        code, size = NC_TYPES[kind]
        n = self.count()
        raw = self.take(n * size)
        if code == "c":
            return name, raw.decode("utf-8", "replace").rstrip("\x00")
        values = list(struct.unpack(f">{n}{code}", raw))
        return name, values[0] if n == 1 else values[:100]

    def variable(self) -> dict[str, Any]:
        name, dims = self.name(), [self.count() for _ in range(self.count())]
        attrs = dict(self.items(12, self.attribute))
        self.take(4 + (8 if self.wide else 4) + (4 if self.version == 1 else 8))  # type, vsize, begin
        return {"name": name, "dimensions": dims, "attributes": attrs}


def read_netcdf(path: str, head: bytes, max_bytes: int = 1 << 20) -> Found:
    with open(path, "rb") as handle:
        data = handle.read(max_bytes)
    xdr = _Xdr(data, data[3])
    records = xdr.count()
    dims = dict(xdr.items(10, lambda: (xdr.name(), xdr.count())))
    attrs = dict(xdr.items(12, xdr.attribute))
    try:
        variables = [v["name"] for v in xdr.items(11, xdr.variable)]
    except HeaderError:
        variables = None  # a variable list cut short by the read limit: dimensions and attributes stand
    metadata = {"version": {1: "classic", 2: "64-bit offset", 5: "CDF-5"}[data[3]], "records": records,
                "dimensions": dims, "attributes": attrs, "variables": variables}
    fields = {"title": attrs.get("title"), "author": attrs.get("author") or attrs.get("creator_name"),
              "producer": attrs.get("institution") or attrs.get("source"), "created": attrs.get("date_created")}
    return Found("netcdf", "application/x-netcdf", "netcdf-header", fields, metadata)


# DICOM Part 10: a few technical tags only. Patient tags (group 0010) are never read: they are personal data.

DICOM_TAGS = {(0x0002, 0x0002): ("media_storage_sop_class", "UI"), (0x0002, 0x0010): ("transfer_syntax", "UI"),
              (0x0008, 0x0020): ("study_date", "DA"), (0x0008, 0x0023): ("content_date", "DA"),
              (0x0008, 0x0060): ("modality", "CS"), (0x0008, 0x0070): ("manufacturer", "LO"),
              (0x0008, 0x1090): ("model", "LO"), (0x0018, 0x1020): ("software_versions", "LO"),
              (0x0028, 0x0002): ("samples_per_pixel", "US"), (0x0028, 0x0008): ("frames", "IS"),
              (0x0028, 0x0010): ("rows", "US"), (0x0028, 0x0011): ("columns", "US"),
              (0x0028, 0x0100): ("bits_allocated", "US")}
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


def _dicom_value(vr: str, raw: bytes, little: bool) -> Any:
    if vr == "US":
        return struct.unpack("<H" if little else ">H", raw[:2])[0]
    text = raw.decode("ascii", "replace").strip("\x00 ")
    if vr == "IS":
        return int(text) if text.lstrip("-").isdigit() else text
    if vr == "DA" and re.fullmatch(r"\d{8}", text):
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return text


def _elements(data: bytes, at: int, explicit: bool, little: bool):
    """(group, element, value bytes, end) from `at` on; stops at a sequence of undefined length."""
    order = "<" if little else ">"
    while at + 8 <= len(data):
        group, element = struct.unpack_from(order + "HH", data, at)
        vr = data[at + 4:at + 6] if explicit else b""
        if vr in LONG_VRS:
            length, at = struct.unpack_from(order + "I", data, at + 8)[0], at + 12
        elif vr:
            length, at = struct.unpack_from(order + "H", data, at + 6)[0], at + 8
        else:
            length, at = struct.unpack_from(order + "I", data, at + 4)[0], at + 8
        if length == 0xFFFFFFFF:
            return
        yield group, element, data[at:at + length], at + length
        at += length


def read_dicom(path: str, head: bytes, max_bytes: int = 256 << 10) -> Found:
    with open(path, "rb") as handle:
        handle.seek(132)
        data = handle.read(max_bytes)
    tags: dict[str, Any] = {}
    dataset = 0
    for group, element, raw, end in _elements(data, 0, explicit=True, little=True):  # file meta: always so
        if group != 0x0002:
            break
        if (group, element) in DICOM_TAGS:
            name, vr = DICOM_TAGS[group, element]
            tags[name] = _dicom_value(vr, raw, True)
        dataset = end
    syntax = tags.get("transfer_syntax")
    if not syntax:
        raise HeaderError("damaged DICOM header (no transfer syntax in the file meta information)")
    if syntax != "1.2.840.10008.1.2.1.99":  # a deflated dataset is not read
        little = syntax != "1.2.840.10008.1.2.2"
        for group, element, raw, _ in _elements(data, dataset, explicit=syntax != "1.2.840.10008.1.2", little=little):
            if group > 0x0028:
                break  # the technical tags wanted all come before pixel data
            if (group, element) in DICOM_TAGS:
                name, vr = DICOM_TAGS[group, element]
                tags[name] = _dicom_value(vr, raw, little)
    fields = {"width": tags.get("columns"), "height": tags.get("rows"),
              "created": tags.get("study_date") or tags.get("content_date"),
              "producer": " ".join(str(tags[k]) for k in ("manufacturer", "model") if tags.get(k)) or None}
    return Found("dicom", "application/dicom", "dicom-header", fields, tags)


# PDF: document information and page count through pypdf.

def _pdf_date(value: Any) -> str | None:
    match = re.match(r"D:(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?", str(value or ""))
    if not match:
        return str(value) if value else None
    parts = [int(p) if p else d for p, d in zip(match.groups(), (0, 1, 1, 0, 0, 0))]
    return dt.datetime(*parts).isoformat()


def _page_count(reader: PdfReader) -> int:
    """The page tree's /Count (one object read), or the pages counted one by one when it has none."""
    try:
        count = reader.root_object["/Pages"].get_object()["/Count"]
    except (KeyError, TypeError, AttributeError):
        count = None
    return int(count) if isinstance(count, int) and count >= 0 else len(reader.pages)


def read_pdf(path: str, head: bytes) -> Found:
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings about a damaged file: the error says enough
    reader = PdfReader(path, strict=False)
    note, metadata = "", {"pdf_version": reader.pdf_header.lstrip("%"), "encrypted": reader.is_encrypted}
    if reader.is_encrypted and not reader.decrypt(""):
        return Found("pdf", "application/pdf", "pypdf", {}, metadata, "encrypted: document information not readable")
    info = {str(k).lstrip("/"): str(v) for k, v in (reader.metadata or {}).items()}
    metadata.update(info=info, pages=_page_count(reader))
    fields = {"title": info.get("Title") or None, "author": info.get("Author") or None,
              "producer": info.get("Producer") or info.get("Creator") or None,
              "created": _pdf_date(info.get("CreationDate")), "page_count": metadata["pages"]}
    return Found("pdf", "application/pdf", "pypdf", fields, metadata, note)


# Office Open XML: docProps/core.xml (title, creator, dates) and docProps/app.xml (application, pages).

OOXML_KINDS = {"word/document.xml": ("docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
               "xl/workbook.xml": ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
               "ppt/presentation.xml": ("pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation")}


def _xml_part(archive: zipfile.ZipFile, name: str, limit: int = 1 << 20) -> dict[str, str]:
    """The simple elements of a small XML part, by local name ({} when the part is missing)."""
    try:
        with archive.open(name) as part:
            raw = part.read(limit + 1)
    except KeyError:
        return {}
    if len(raw) > limit:
        raise HeaderError(f"{name} is over {limit >> 20} MB")
    root = ElementTree.fromstring(raw)
    return {element.tag.rsplit("}", 1)[-1]: element.text.strip() for element in root.iter()
            if element is not root and element.text and element.text.strip() and len(element) == 0}


def read_ooxml(path: str, head: bytes) -> Found | None:
    """Core and app properties of an Office Open XML file; None for any other zip (hachoir's)."""
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        if "[Content_Types].xml" not in names:
            return None
        kind, mime = next((OOXML_KINDS[n] for n in OOXML_KINDS if n in names), ("ooxml", "application/zip"))
        core, app = _xml_part(archive, "docProps/core.xml"), _xml_part(archive, "docProps/app.xml")
    pages = app.get("Pages") or app.get("Slides")
    fields = {"title": core.get("title"), "author": core.get("creator"), "created": core.get("created"),
              "producer": " ".join(filter(None, (app.get("Application"), app.get("AppVersion")))) or None,
              "page_count": int(pages) if pages and pages.isdigit() else None}
    return Found(kind, mime, "ooxml-properties", fields, {"core": core, "app": app})
