"""Uncompressed-audio containers read chunk by chunk: WAV in all its RIFF forms (RIFF, big-endian
RIFX, RF64 and BW64 with the 64-bit sizes of their ds64 chunk; WAVE_FORMAT_EXTENSIBLE resolved to
its sub-format) with LIST/INFO text, and AIFF / AIFF-C (COMM, NAME, AUTH, ANNO, ID3 chunks)."""
from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from typing import Iterator

from tasks.files.found import Found, HeaderError, Source, cut_note, text

WAV_FORMS = (b"RIFF", b"RIFX", b"RF64", b"BW64")
WAV_CODECS = {1: "PCM", 2: "MS ADPCM", 3: "IEEE float", 6: "A-law", 7: "mu-law", 0x11: "IMA ADPCM",
              0x31: "GSM 6.10", 0x50: "MPEG", 0x55: "MPEG Layer 3", 0x161: "WMA", 0x2000: "AC-3"}
INFO_FIELDS = {b"INAM": "title", b"IART": "author", b"ICRD": "created", b"ISFT": "producer"}
AIFF_TEXT = {b"NAME": "title", b"AUTH": "author", b"ANNO": "comment", b"(c) ": "copyright"}
MAX_CHUNKS = 1000
MAX_TEXT_CHUNK = 64 << 10


@dataclass
class Chunk:
    kind: bytes
    offset: int  # of its data
    size: int
    data: bytes = b""  # read for the small chunks asked for


@dataclass
class Walk:
    chunks: list[Chunk] = field(default_factory=list)
    declared: int = 0  # the file size the outer header declares


def _chunks(handle, start: int, order: str, wanted: tuple[bytes, ...], end: int) -> Iterator[Chunk]:
    at = start
    for _ in range(MAX_CHUNKS):
        handle.seek(at)
        header = handle.read(8)
        if len(header) < 8:
            return
        kind, size = header[:4], struct.unpack(order + "I", header[4:])[0]
        chunk = Chunk(kind, at + 8, size)
        if kind in wanted:
            chunk.data = handle.read(min(size, MAX_TEXT_CHUNK))
        yield chunk
        at += 8 + size + (size & 1)
        if at >= end:
            return


def looks_like_wav(head: bytes) -> bool:
    return head[:4] in WAV_FORMS and head[8:12] == b"WAVE"


def read_wav(source: Source, head: bytes) -> Found:
    order = ">" if head[:4] == b"RIFX" else "<"
    actual = source.size
    chunks = list(_chunks(source.handle, 12, order, (b"fmt ", b"ds64", b"fact", b"LIST"), actual))
    found = {chunk.kind: chunk for chunk in chunks}
    declared = struct.unpack_from(order + "I", head, 4)[0] + 8
    data_size = found[b"data"].size if b"data" in found else 0
    samples = struct.unpack_from("<I", found[b"fact"].data)[0] if len(found.get(b"fact", Chunk(b"", 0, 0)).data) >= 4 else None
    if head[:4] in (b"RF64", b"BW64"):
        ds64 = found.get(b"ds64")
        if ds64 is None or len(ds64.data) < 24:
            raise HeaderError("damaged RF64 file: no ds64 chunk")
        riff_size, data_size, samples = struct.unpack_from("<QQQ", ds64.data)
        declared = riff_size + 8
    fmt = found.get(b"fmt ")
    if fmt is None or len(fmt.data) < 16:
        raise HeaderError("damaged WAV file: no fmt chunk")
    tag, channels, rate, byte_rate, block, bits = struct.unpack_from(order + "HHIIHH", fmt.data)
    if tag == 0xFFFE and len(fmt.data) >= 26:  # extensible: the sub-format GUID starts with the real tag
        tag = struct.unpack_from(order + "H", fmt.data, 24)[0]
    if b"data" in found:
        data_size = min(data_size, actual - found[b"data"].offset)
    if tag in (1, 3, 6, 7) and block and rate:
        duration = data_size / block / rate
    elif samples and rate and tag not in (1, 3):
        duration = samples / rate
    else:
        duration = data_size / byte_rate if byte_rate else None
    info = _info(found.get(b"LIST"))
    fields = {"duration_s": duration, "sample_rate": rate, "channels": channels, "bit_rate": byte_rate * 8,
              "codec": WAV_CODECS.get(tag, f"0x{tag:04x}"), **{INFO_FIELDS[k]: v for k, v in info.items() if k in INFO_FIELDS}}
    metadata = {"form": head[:4].decode(), "format_tag": tag, "bits_per_sample": bits, "block_align": block,
                "data_bytes": data_size, "info": {k.decode("latin-1"): v for k, v in info.items()}}
    return Found("wav", "audio/x-wav", "wav-chunks", fields, metadata, cut_note(declared, actual))


def _info(chunk: Chunk | None) -> dict[bytes, str]:
    if chunk is None or chunk.data[:4] != b"INFO":
        return {}
    values, at, data = {}, 4, chunk.data
    while at + 8 <= len(data):
        kind, size = data[at:at + 4], struct.unpack_from("<I", data, at + 4)[0]
        value = text(data[at + 8:at + 8 + size].split(b"\x00", 1)[0].decode("latin-1"))
        if value:
            values[kind] = value
        at += 8 + size + (size & 1)
    return values


def _extended(raw: bytes) -> float:
    """An IEEE 754 80-bit extended float (AIFF's sample rate)."""
    exponent, mantissa = struct.unpack(">HQ", raw[:10])
    sign = -1 if exponent & 0x8000 else 1
    exponent &= 0x7FFF
    return 0.0 if exponent == 0 and mantissa == 0 else sign * mantissa * 2.0 ** (exponent - 16383 - 63)


def read_aiff(source: Source, head: bytes) -> Found:
    actual = source.size
    chunks = list(_chunks(source.handle, 12, ">", (b"COMM", b"ID3 ", *AIFF_TEXT), actual))
    found = {chunk.kind: chunk for chunk in chunks}
    comm = found.get(b"COMM")
    if comm is None or len(comm.data) < 18:
        raise HeaderError("damaged AIFF file: no COMM chunk")
    channels, frames, bits = struct.unpack_from(">HIH", comm.data)
    rate = _extended(comm.data[8:18])
    codec = comm.data[18:22].decode("latin-1") if head[8:12] == b"AIFC" and len(comm.data) >= 22 else "NONE"
    texts = {name: text(found[kind].data.decode("latin-1")) for kind, name in AIFF_TEXT.items() if kind in found}
    if b"ID3 " in found:
        texts.update({k: v for k, v in _id3_text(found[b"ID3 "].data).items() if v})
    fields = {"duration_s": frames / rate if rate else None, "sample_rate": rate, "channels": channels,
              "codec": codec, "bit_rate": rate * channels * bits if codec in ("NONE", "twos", "sowt") else None,
              "title": texts.get("title"), "author": texts.get("author"), "created": texts.get("created")}
    metadata = {"form": head[8:12].decode("latin-1"), "bits_per_sample": bits, "frames": frames, **texts}
    declared = struct.unpack_from(">I", head, 4)[0] + 8
    return Found("aiff", "audio/x-aiff", "aiff-chunks", fields, metadata, cut_note(declared, actual))


def _id3_text(data: bytes) -> dict[str, str | None]:
    """Title, artist and year of an ID3v2 tag held in memory (mutagen)."""
    from mutagen.id3 import ID3, ID3NoHeaderError

    try:
        tags = ID3(io.BytesIO(data))
    except (ID3NoHeaderError, ValueError):
        return {}
    first = lambda key: text(tags[key].text[0]) if key in tags and tags[key].text else None  # noqa: E731
    return {"title": first("TIT2"), "author": first("TPE1"), "created": first("TDRC")}
