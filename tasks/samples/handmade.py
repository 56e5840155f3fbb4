"""Sample files in formats no installed tool writes, byte by byte after their specifications: Photoshop
headers, old ACR-NEMA DICOM (no preamble), DICOM with a compressed transfer syntax, Type 1 fonts
(AFM, PFA, PFB), SVG, big-endian RIFX WAV, DOS EPS with a binary header, NumPy arrays."""
from __future__ import annotations

import struct
from pathlib import Path

from tasks.samples.files import _dicom_element


def write_psd(path: Path, width: int, height: int, channels: int = 3, depth: int = 8) -> Path:
    """A Photoshop file: header (height before width), empty colour mode, resources and layers, raw image."""
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, channels, height, width, depth, 3)
    data = struct.pack(">H", 0) + bytes(width * height * channels * depth // 8)
    path.write_bytes(header + struct.pack(">III", 0, 0, 0) + data)
    return path


def _implicit_element(group: int, element: int, value: bytes) -> bytes:
    value += b" " * (len(value) % 2)
    return struct.pack("<HHI", group, element, len(value)) + value


def write_acr_nema(path: Path, rows: int, columns: int) -> Path:
    """An ACR-NEMA / DICOM file without preamble nor file meta: implicit VR little endian from byte 0."""
    body = (_implicit_element(0x0008, 0x0016, b"1.2.840.10008.5.1.4.1.1.7")
            + _implicit_element(0x0008, 0x0020, b"19970512") + _implicit_element(0x0008, 0x0060, b"MR")
            + _implicit_element(0x0008, 0x0070, b"Old Scanner Co")
            + _implicit_element(0x0028, 0x0002, struct.pack("<H", 1))
            + _implicit_element(0x0028, 0x0010, struct.pack("<H", rows))
            + _implicit_element(0x0028, 0x0011, struct.pack("<H", columns))
            + _implicit_element(0x0028, 0x0100, struct.pack("<H", 16))
            + _implicit_element(0x7FE0, 0x0010, bytes(rows * columns * 2)))
    path.write_bytes(body)
    return path


def write_compressed_dicom(path: Path, rows: int, columns: int, jpeg: bytes) -> Path:
    """A DICOM Part 10 file with JPEG baseline pixel data, encapsulated (undefined length, items)."""
    meta = (_dicom_element(0x0002, 0x0002, "UI", b"1.2.840.10008.5.1.4.1.1.7")
            + _dicom_element(0x0002, 0x0010, "UI", b"1.2.840.10008.1.2.4.50"))
    item = lambda data: struct.pack("<HHI", 0xFFFE, 0xE000, len(data)) + data  # noqa: E731
    frame = jpeg + b"\x00" * (len(jpeg) % 2)
    pixels = (struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF) + item(b"") + item(frame)
              + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    body = (_dicom_element(0x0002, 0x0000, "UL", struct.pack("<I", len(meta))) + meta
            + _dicom_element(0x0008, 0x0020, "DA", b"20230405") + _dicom_element(0x0008, 0x0060, "CS", b"OT")
            + _dicom_element(0x0028, 0x0002, "US", struct.pack("<H", 3))
            + _dicom_element(0x0028, 0x0010, "US", struct.pack("<H", rows))
            + _dicom_element(0x0028, 0x0011, "US", struct.pack("<H", columns))
            + _dicom_element(0x0028, 0x0100, "US", struct.pack("<H", 8)) + pixels)
    path.write_bytes(bytes(128) + b"DICM" + body)
    return path


def _type1_cleartext(name: str, family: str, bbox: tuple[int, int, int, int]) -> bytes:
    return (f"%!PS-AdobeFont-1.0: {name} 001.003\n%%CreationDate: Thu Mar 14 10:00:00 2024\n"
            f"%%Title: {name}\n11 dict begin\n/FontInfo 9 dict dup begin\n/version (001.003) readonly def\n"
            f"/Notice (Sample font for tests) readonly def\n/FullName ({family} Regular) readonly def\n"
            f"/FamilyName ({family}) readonly def\n/Weight (Regular) readonly def\nend readonly def\n"
            f"/FontName /{name} def\n/FontBBox {{{' '.join(map(str, bbox))}}} readonly def\n"
            "currentdict end\ncurrentfile eexec\n").encode()


def write_pfa(path: Path, name: str = "SampleSans-Regular", family: str = "Sample Sans") -> Path:
    """A Type 1 font in ASCII form: clear-text dictionary, hex eexec part, 512 zeros, cleartomark."""
    zeros = ("0" * 64 + "\n") * 8
    path.write_bytes(_type1_cleartext(name, family, (-50, -200, 1000, 900)) + b"d9d66f633b846a98\n"
                     + zeros.encode() + b"cleartomark\n")
    return path


def write_pfb(path: Path, name: str = "SampleSerif-Bold", family: str = "Sample Serif") -> Path:
    """A Type 1 font in binary (PFB) segments: ASCII, binary eexec, ASCII trailer, end."""
    segment = lambda kind, data: b"\x80" + bytes([kind]) + struct.pack("<I", len(data)) + data  # noqa: E731
    trailer = (("0" * 64 + "\n") * 8 + "cleartomark\n").encode()
    path.write_bytes(segment(1, _type1_cleartext(name, family, (-20, -250, 1100, 950)))
                     + segment(2, bytes(range(64))) + segment(1, trailer) + b"\x80\x03")
    return path


def write_afm(path: Path, name: str = "SampleSans-Regular", family: str = "Sample Sans") -> Path:
    """Adobe Font Metrics: the header keys and two character metrics."""
    path.write_text(f"StartFontMetrics 4.1\nComment Creation Date: Thu Mar 14 10:00:00 2024\nFontName {name}\n"
                    f"FullName {family} Regular\nFamilyName {family}\nWeight Regular\nItalicAngle 0\n"
                    "IsFixedPitch false\nFontBBox -50 -200 1000 900\nVersion 001.003\nNotice Sample font\n"
                    "EncodingScheme AdobeStandardEncoding\nCapHeight 700\nXHeight 500\nAscender 750\n"
                    "Descender -200\nStartCharMetrics 2\nC 32 ; WX 250 ; N space ; B 0 0 0 0 ;\n"
                    "C 65 ; WX 600 ; N A ; B 10 0 590 700 ;\nEndCharMetrics\nEndFontMetrics\n")
    return path


def write_svg(path: Path, width: str | None, height: str | None, view_box: str | None = None,
              title: str = "Sample drawing") -> Path:
    """An SVG whose root carries the given width, height and viewBox (any may be left out)."""
    attrs = " ".join(f'{key}="{value}"' for key, value in
                     (("width", width), ("height", height), ("viewBox", view_box)) if value is not None)
    path.write_text(f'<?xml version="1.0" encoding="UTF-8"?>\n<!-- a sample -->\n'
                    f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" {attrs}>\n'
                    f'  <title>{title}</title>\n  <rect x="1" y="1" width="5" height="5" fill="red"/>\n</svg>\n')
    return path


def write_rifx_wav(path: Path, seconds: float, rate: int = 22050, channels: int = 1) -> Path:
    """A big-endian WAV (RIFX): 16-bit PCM, every number big-endian."""
    frames = int(seconds * rate)
    fmt = struct.pack(">HHIIHH", 1, channels, rate, rate * channels * 2, channels * 2, 16)
    data = b"\x01\x00" * frames * channels
    body = b"WAVE" + b"fmt " + struct.pack(">I", len(fmt)) + fmt + b"data" + struct.pack(">I", len(data)) + data
    path.write_bytes(b"RIFX" + struct.pack(">I", len(body)) + body)
    return path


def write_dos_eps(path: Path, width: int, height: int) -> Path:
    """An EPS with the DOS binary header (C5D0D3C6) in front of its PostScript, no preview."""
    postscript = (f"%!PS-Adobe-3.0 EPSF-3.0\n%%Creator: batchflows samples\n%%Title: Boxed\n"
                  f"%%CreationDate: 2024-03-01\n%%BoundingBox: 0 0 {width} {height}\n%%EndComments\n"
                  f"newpath 0 0 moveto {width} {height} lineto stroke\nshowpage\n%%EOF\n").encode()
    header = b"\xc5\xd0\xd3\xc6" + struct.pack("<IIIIIIH", 30, len(postscript), 0, 0, 0, 0, 0xFFFF)
    path.write_bytes(header + postscript)
    return path


def write_npy(path: Path, shape: tuple[int, ...]) -> Path:
    import numpy

    numpy.save(path, numpy.arange(int(numpy.prod(shape)), dtype="<f4").reshape(shape))
    return path


def write_ar(path: Path, members: dict[str, bytes]) -> Path:
    """A Unix ar archive (what `ar rc` writes for a static library) with the given members."""
    parts = [b"!<arch>\n"]
    for name, data in members.items():
        parts.append(f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{644:<8}{len(data):<10}`\n".encode("ascii") + data
                     + b"\n" * (len(data) & 1))
    path.write_bytes(b"".join(parts))
    return path


def write_texts(root: Path) -> list[Path]:
    """Text in the encodings of real collections: UTF-16 with a byte order mark, Windows-1252, Shift JIS
    XML, JSON, CSV, a script, PHP, text in braces that is not JSON, and an HTML page with a title, an author and an inline SVG."""
    pages = {
        "utf16.txt": "\ufeffUnicode text with a byte order mark: naïve café\r\n".encode("utf-16-le"),
        "cp1252.txt": "Prix: 12 € la pièce, à régler d'avance\n".encode("cp1252"),
        "shiftjis.xml": '<?xml version="1.0" encoding="Shift_JIS"?>\n<note>日本語のテキスト</note>\n'.encode("shift_jis"),
        "data.json": b'{"id": 7, "tags": ["a", "b"], "nested": {"ok": true}}\n',
        "brace.txt": b"{ a note in braces, not JSON }\n",
        "table.csv": b"id,name,city\n1,Ana,Lisboa\n2,Bo,Oslo\n",
        "tool": b"#!/usr/bin/env python3\nprint('hello')\n",
        "index.php": b"<?php echo 'hello'; ?>\n",
        "page.html": b'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Quarterly report</title>'
                     b'<meta name="author" content="Ana Lima"></head><body><svg width="10" height="10">'
                     b'<circle r="4"/></svg></body></html>\n',
    }
    for name, data in pages.items():
        (root / name).write_bytes(data)
    return [root / name for name in pages]
