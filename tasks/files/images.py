"""Raster image headers. Pillow opens the formats it knows for the header only (`Image.open` reads
lazily; nothing is decoded); ICO directories, OpenEXR attributes and DPX headers are read here.
`trailer_note` tells a cut PNG, JPEG or GIF by its missing end marker."""
from __future__ import annotations

import struct
from typing import Any

from tasks.files.found import Found, HeaderError, Source, cut_note, read_at, tail, text

PILLOW = {  # our format -> (Pillow's format id, MIME type)
    "webp": ("WEBP", "image/webp"), "bmp": ("BMP", "image/bmp"), "ppm": ("PPM", "image/x-portable-pixmap"),
    "pgm": ("PPM", "image/x-portable-graymap"), "pbm": ("PPM", "image/x-portable-bitmap"),
    "pam": ("PPM", "image/x-portable-arbitrarymap"),
    "tiff": ("TIFF", "image/tiff"), "jp2": ("JPEG2000", "image/jp2"), "j2c": ("JPEG2000", "image/x-jp2-codestream"),
    "icns": ("ICNS", "image/icns"), "dds": ("DDS", "image/vnd-ms.dds"), "qoi": ("QOI", "image/qoi"),
}
NETPBM = {b"P1": "pbm", b"P4": "pbm", b"P2": "pgm", b"P5": "pgm", b"P3": "ppm", b"P6": "ppm", b"P7": "pam"}
TIFF_TAGS = {270: "title", 315: "author", 306: "created", 305: "producer"}
EXR_MAGIC = b"\x76\x2f\x31\x01"


def image_kind(head: bytes) -> str | None:
    """Our format name for a header Pillow or this module reads, or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:2] == b"BM" and len(head) >= 26 and struct.unpack_from("<I", head, 14)[0] in (12, 40, 52, 56, 64, 108, 124):
        return "bmp"
    if head[:2] in NETPBM and head[2:3] in b" \t\r\n":
        return NETPBM[head[:2]]
    if head[:6] == b"8BPS\x00\x01" or head[:6] == b"8BPS\x00\x02":
        return "psd"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n":
        return "jp2"
    if head[:4] == b"\xff\x4f\xff\x51":
        return "j2c"
    if head[:4] == b"icns":
        return "icns"
    if head[:4] == b"DDS " and head[4:8] == b"\x7c\x00\x00\x00":
        return "dds"
    if head[:4] == b"qoif":
        return "qoi"
    if head[:4] == b"\x00\x00\x01\x00" and _ico_directory(head):
        return "ico"
    if head[:4] == EXR_MAGIC:
        return "exr"
    if head[:4] in (b"SDPX", b"XPDS"):
        return "dpx"
    return None


def read_image(source: Source, head: bytes) -> Found:
    kind = image_kind(head)
    if kind == "ico":
        return read_ico(source, head)
    if kind == "exr":
        return read_exr(source, head)
    if kind == "dpx":
        return read_dpx(source, head)
    if kind == "psd":
        return read_psd(source, head)
    from PIL import Image, UnidentifiedImageError

    pillow, mime = PILLOW[kind]
    try:
        with Image.open(source.handle, formats=[pillow]) as image:
            width, height = image.size
            info = {key: value for key, value in image.info.items() if isinstance(value, (str, int, float, tuple))}
            metadata: dict[str, Any] = {"mode": image.mode, **info}
            fields: dict[str, Any] = {"width": width, "height": height}
            if kind == "tiff":
                tags = image.getexif()
                fields.update({name: text(tags.get(tag)) for tag, name in TIFF_TAGS.items()})
                original = tags.get_ifd(0x8769).get(0x9003)
                fields["created"] = text(original) or fields["created"]
                metadata.update(make=text(tags.get(271)), model=text(tags.get(272)))
                metadata.pop("exif", None)
    except UnidentifiedImageError:  # Pillow names a file object by its repr: the file's name instead
        raise HeaderError(f"damaged {kind.upper()} header: cannot identify image file {source.name!r}") from None
    except (SyntaxError, struct.error, EOFError) as error:
        raise HeaderError(f"damaged {kind.upper()} header: {error}") from None
    note = cut_note(struct.unpack_from("<I", head, 2)[0], source.size) if kind == "bmp" else ""
    return Found(kind, mime, f"pillow:{pillow}", fields, metadata, note)


def read_psd(source: Source, head: bytes) -> Found:
    """Photoshop (PSD, PSB): the header has the height before the width."""
    channels, height, width, depth, mode = struct.unpack_from(">HIIHH", head, 12)
    modes = {0: "bitmap", 1: "grayscale", 2: "indexed", 3: "RGB", 4: "CMYK", 7: "multichannel", 8: "duotone", 9: "Lab"}
    return Found("psd", "image/vnd.adobe.photoshop", "psd-header", {"width": width, "height": height},
                 {"version": head[5], "channels": channels, "bits_per_channel": depth, "mode": modes.get(mode, mode)})


def _ico_directory(head: bytes) -> list[tuple[int, int]]:
    """(width, height) of each image in an ICO directory (0 means 256); [] if it does not check out."""
    count = struct.unpack_from("<H", head, 4)[0] if len(head) >= 6 else 0
    if not 0 < count <= 256 or len(head) < 6 + 16 * count:
        return []
    sizes = []
    for n in range(count):
        width, height, _, reserved, planes, bits, size, offset = struct.unpack_from("<BBBBHHII", head, 6 + 16 * n)
        if reserved not in (0, 255) or planes > 1 or bits not in (0, 1, 2, 4, 8, 16, 24, 32) or offset < 6 + 16 * count:
            return []
        sizes.append((width or 256, height or 256))
    return sizes


def read_ico(source: Source, head: bytes) -> Found:
    """The first image's size, as ExifTool gives it; every size in the metadata."""
    sizes = _ico_directory(head)
    return Found("ico", "image/vnd.microsoft.icon", "ico-directory", {"width": sizes[0][0], "height": sizes[0][1]},
                 {"images": len(sizes), "sizes": [f"{w}x{h}" for w, h in sizes]})


def read_exr(source: Source, head: bytes, max_bytes: int = 64 << 10) -> Found:
    """OpenEXR: the first header's attributes (name, type, size, value) up to the empty name."""
    data, at, attributes = read_at(source, 0, max_bytes), 8, {}
    while at < len(data) and data[at] != 0:
        name_end = data.find(b"\x00", at)
        kind_end = data.find(b"\x00", name_end + 1)
        if name_end < 0 or kind_end < 0 or kind_end + 5 > len(data):
            raise HeaderError("damaged or cut OpenEXR header")
        name, kind = data[at:name_end].decode("latin-1"), data[name_end + 1:kind_end].decode("latin-1")
        size = struct.unpack_from("<i", data, kind_end + 1)[0]
        value = data[kind_end + 5:kind_end + 5 + size]
        attributes[name] = _exr_value(kind, value)
        at = kind_end + 5 + size
    window = attributes.get("dataWindow") or attributes.get("displayWindow")
    if not isinstance(window, list):
        raise HeaderError("damaged OpenEXR header: no data window")
    fields = {"width": window[2] - window[0] + 1, "height": window[3] - window[1] + 1,
              "author": attributes.get("owner"), "created": attributes.get("capDate"), "title": attributes.get("comments")}
    return Found("exr", "image/x-exr", "exr-header", fields, attributes)


def _exr_value(kind: str, value: bytes) -> Any:
    if kind == "box2i" and len(value) == 16:
        return list(struct.unpack("<4i", value))
    if kind == "string":
        return value.decode("utf-8", "replace")
    if kind in ("int", "compression", "lineOrder") and value:
        return struct.unpack("<i", value.ljust(4, b"\x00"))[0] if kind == "int" else value[0]
    if kind == "float" and len(value) == 4:
        return struct.unpack("<f", value)[0]
    if kind == "chlist":  # name, NUL, 16 bytes of layout; a NUL ends the list
        names, at = [], 0
        while at < len(value) and value[at] and len(names) < 64:
            end = value.find(b"\x00", at)
            names.append(value[at:end].decode("latin-1"))
            at = end + 17
        return names
    return f"{kind}, {len(value)} bytes"


def read_dpx(source: Source, head: bytes) -> Found:
    order = ">" if head[:4] == b"SDPX" else "<"
    if len(head) < 780:
        raise HeaderError("cut DPX header")
    width, height = struct.unpack_from(order + "II", head, 772)
    creator, created, project = (text(head[a:a + n].split(b"\x00", 1)[0]) for a, n in ((160, 100), (260, 24), (284, 200)))
    return Found("dpx", "image/x-dpx", "dpx-header", {"width": width, "height": height, "producer": creator,
                                                     "created": created, "title": project},
                 {"version": text(head[8:16].split(b"\x00", 1)[0])})


def trailer_note(kind: str, source: Source) -> str:
    """A note when a PNG, JPEG or GIF lacks its end marker (a cut file); '' otherwise."""
    if kind == "png":
        return "" if tail(source, 12) == b"\x00\x00\x00\x00IEND\xaeB`\x82" else "cut file? no IEND chunk at the end"
    if kind == "jpeg":
        return "" if b"\xff\xd9" in tail(source, 64 << 10) else "cut file? no end-of-image marker"
    if kind == "gif":
        return "" if tail(source, 1) == b";" else "cut file? no GIF trailer"
    return ""
