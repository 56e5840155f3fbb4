"""DICOM: a few technical tags from Part 10 files (preamble, DICM, file meta) and from old ACR-NEMA
files that start with the dataset itself. Patient tags (group 0010) are never read: they are
personal data. Sequences of undefined length are skipped item by item, a deflated dataset is
inflated, big-endian explicit VR is read."""
from __future__ import annotations

import re
import struct
import zlib
from typing import Any, Iterator

from tasks.files.found import Found, HeaderError, Source, read_at

TAGS = {(0x0002, 0x0002): ("media_storage_sop_class", "UI"), (0x0002, 0x0010): ("transfer_syntax", "UI"),
        (0x0008, 0x0016): ("sop_class", "UI"), (0x0008, 0x0020): ("study_date", "DA"),
        (0x0008, 0x0023): ("content_date", "DA"), (0x0008, 0x0060): ("modality", "CS"),
        (0x0008, 0x0070): ("manufacturer", "LO"), (0x0008, 0x1090): ("model", "LO"),
        (0x0018, 0x1020): ("software_versions", "LO"), (0x0028, 0x0002): ("samples_per_pixel", "US"),
        (0x0028, 0x0008): ("frames", "IS"), (0x0028, 0x0010): ("rows", "US"), (0x0028, 0x0011): ("columns", "US"),
        (0x0028, 0x0100): ("bits_allocated", "US")}
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
UNDEFINED = 0xFFFFFFFF
IMPLICIT_LE, EXPLICIT_BE, DEFLATED = "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"
MAX_BYTES = 256 << 10  # the technical tags wanted all come before the pixel data


def _value(vr: str, raw: bytes, little: bool) -> Any:
    if vr == "US":
        return struct.unpack("<H" if little else ">H", raw[:2])[0] if len(raw) >= 2 else None
    text = raw.decode("ascii", "replace").strip("\x00 ")
    if vr == "IS":
        return int(text) if text.lstrip("-").isdigit() else text
    if vr == "DA" and re.fullmatch(r"\d{8}", text):
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return text


def _header(data: bytes, at: int, order: str, explicit: bool) -> tuple[int, int]:
    """(value length, where the value starts) of the element at `at`."""
    vr = data[at + 4:at + 6] if explicit else b""
    if vr in LONG_VRS:
        return struct.unpack_from(order + "I", data, at + 8)[0], at + 12
    if vr:
        return struct.unpack_from(order + "H", data, at + 6)[0], at + 8
    return struct.unpack_from(order + "I", data, at + 4)[0], at + 8


def _skip_undefined(data: bytes, at: int, order: str, explicit: bool) -> int:
    """Where a sequence (or encapsulated pixel data) of undefined length ends: past its delimiter."""
    depth = 1
    while depth and at + 8 <= len(data):
        group, element = struct.unpack_from(order + "HH", data, at)
        if group == 0xFFFE:  # items and delimiters: a tag and a 4-byte length whatever the VR rule
            length, at = struct.unpack_from(order + "I", data, at + 4)[0], at + 8
            if element == 0xE0DD:
                depth -= 1
            elif element == 0xE000 and length != UNDEFINED:
                at += length
            continue
        length, at = _header(data, at, order, explicit)
        if length == UNDEFINED:
            depth += 1
        else:
            at += length
    return at


def elements(data: bytes, at: int, explicit: bool, little: bool) -> Iterator[tuple[int, int, bytes, int]]:
    """(group, element, value bytes, end) from `at` on, top level only."""
    order = "<" if little else ">"
    while at + 8 <= len(data):
        group, element = struct.unpack_from(order + "HH", data, at)
        length, at = _header(data, at, order, explicit)
        if length == UNDEFINED:
            at = _skip_undefined(data, at, order, explicit)
            yield group, element, b"", at
            continue
        yield group, element, data[at:at + length], at + length
        at += length


def looks_like_acr_nema(head: bytes) -> bool:
    """A dataset from byte 0 (no preamble): its first elements parse, in ascending order, in group
    0002 or 0008 first, with lengths inside the data."""
    if len(head) < 24 or struct.unpack_from("<H", head)[0] not in (0x0002, 0x0008):
        return False
    explicit = head[4:6].isalpha() and head[4:6].isupper()
    previous, count = (-1, -1), 0
    for group, element, raw, end in elements(head, 0, explicit, True):
        if (group, element) <= previous or group % 2 or end > len(head) and count < 2:
            return False
        previous, count = (group, element), count + 1
        if count == 3:
            return True
    return False


def read_dicom(source: Source, head: bytes) -> Found:
    data = read_at(source, 0, MAX_BYTES + 132)
    tags: dict[str, Any] = {}
    if data[128:132] == b"DICM":
        data, dataset = data[132:], 0
        for group, element, raw, end in elements(data, 0, explicit=True, little=True):  # file meta: always so
            if group != 0x0002:
                break
            if (group, element) in TAGS:
                name, vr = TAGS[group, element]
                tags[name] = _value(vr, raw, True)
            dataset = end
        syntax = tags.get("transfer_syntax")
        if not syntax:
            raise HeaderError("damaged DICOM header (no transfer syntax in the file meta information)")
        kind = "dicom"
    else:  # ACR-NEMA: no file meta; implicit VR little endian unless the bytes say explicit
        dataset, kind = 0, "acr-nema"
        syntax = "1.2.840.10008.1.2.1" if data[4:6].isalpha() and data[4:6].isupper() else IMPLICIT_LE
    if syntax == DEFLATED:
        data, dataset = zlib.decompressobj(-15).decompress(data[dataset:], MAX_BYTES), 0
    little = syntax != EXPLICIT_BE
    for group, element, raw, _ in elements(data, dataset, explicit=syntax != IMPLICIT_LE, little=little):
        if group > 0x0028:
            break
        if (group, element) in TAGS and group != 0x0002:
            name, vr = TAGS[group, element]
            tags[name] = _value(vr, raw, little)
    fields = {"width": tags.get("columns"), "height": tags.get("rows"),
              "created": tags.get("study_date") or tags.get("content_date"),
              "producer": " ".join(str(tags[k]) for k in ("manufacturer", "model") if tags.get(k)) or None}
    return Found(kind, "application/dicom", "dicom-header", fields, tags)
