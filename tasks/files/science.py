"""Scientific data headers hachoir has no metadata for: FITS cards, HDF5 (and NetCDF-4) top-level
attributes through h5py (the optional hdf5 extra), classic NetCDF's XDR header."""
from __future__ import annotations

import re
import struct
from typing import Any, Callable

from tasks.files.found import Found, HeaderError, Source, read_at

try:  # the optional hdf5 extra: top-level attributes of HDF5 and NetCDF-4 files
    import h5py
except ImportError:
    h5py = None

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


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


def read_fits(source: Source, head: bytes, max_blocks: int = 100) -> Found:
    cards: dict[str, Any] = {}
    handle = source.rewound()
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


def read_hdf5(source: Source, head: bytes) -> Found:
    at = hdf5_offset(head)
    metadata: dict[str, Any] = {"superblock_version": head[at + 8] if len(head) > at + 8 else None, "user_block": at}
    if h5py is None:
        metadata["attributes"] = "not read: install the hdf5 extra (h5py)"
    else:
        with h5py.File(source.rewound(), "r") as opened:
            metadata["attributes"] = {str(k): _plain(v) for k, v in list(opened.attrs.items())[:200]}
            metadata["members"] = list(opened.keys())[:200]
    attrs = metadata["attributes"] if isinstance(metadata["attributes"], dict) else {}
    netcdf = "_NCProperties" in attrs or source.name.lower().endswith((".nc", ".nc4", ".cdf"))
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


def read_netcdf(source: Source, head: bytes, max_bytes: int = 1 << 20) -> Found:
    data = read_at(source, 0, max_bytes)
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
