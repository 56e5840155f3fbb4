"""Sample files for the file-metadata tests: small generated ones in the formats the flow reads, plus
hostile ones (a JPEG whose EXIF chain loops, truncated copies). The machine's own files and media from
ffmpeg are gathered by tasks/samples/corpus.py."""
from __future__ import annotations

import datetime as dt
import random
import struct
import wave
import zipfile
import zlib
from pathlib import Path


def write_wav(path: Path, seconds: float = 0.5, rate: int = 8000, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x00\x01" * channels * int(rate * seconds))
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png(path: Path, width: int = 4, height: int = 3, software: str = "batchflows tests") -> Path:
    """A grey PNG written byte by byte: IHDR, a tEXt Software chunk, IDAT, IEND."""
    rows = b"".join(b"\x00" + bytes(range(width)) for _ in range(height))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + _png_chunk(b"tEXt", b"Software\x00" + software.encode())
                     + _png_chunk(b"IDAT", zlib.compress(rows)) + _png_chunk(b"IEND", b""))
    return path


def _fits_card(key: str, value: object = None, text: str = "") -> bytes:
    if value is None:
        return f"{key:<8}{text}".ljust(80).encode()
    shown = "T" if value is True else "F" if value is False else f"'{value}'" if isinstance(value, str) else str(value)
    return f"{key:<8}= {shown:>20}".ljust(80).encode()


def write_fits(path: Path, width: int = 10, height: int = 8, obj: str = "M31", date_obs: str = "2024-03-01T22:10:00") -> Path:
    """A FITS primary HDU: 16-bit image, a few keywords, zero data, padded to 2880-byte blocks."""
    cards = [_fits_card("SIMPLE", True), _fits_card("BITPIX", 16), _fits_card("NAXIS", 2),
             _fits_card("NAXIS1", width), _fits_card("NAXIS2", height), _fits_card("OBJECT", obj),
             _fits_card("DATE-OBS", date_obs), _fits_card("TELESCOP", "Test 1m"), _fits_card("OBSERVER", "A. Astronomer"),
             _fits_card("HISTORY", text="written by tasks.samples.files"), _fits_card("END")]
    header = b"".join(cards)
    data = bytes(width * height * 2)
    pad = lambda block, fill: block + fill * (-len(block) % 2880)  # noqa: E731
    path.write_bytes(pad(header, b" ") + pad(data, b"\x00"))
    return path


def write_hdf5(path: Path, attrs: dict | None = None) -> Path:
    """A real HDF5 file through h5py when installed, else only its signature and superblock."""
    try:
        import h5py
    except ImportError:
        path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes([0, 0, 0, 0, 0, 8, 8, 0]) + bytes(88))
        return path
    with h5py.File(path, "w") as out:
        out.attrs.update(attrs or {"title": "sample", "institution": "batchflows"})
        out.create_dataset("temperature", data=[[1.0, 2.0], [3.0, 4.0]])
    return path


def _nc_name(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">i", len(raw)) + raw + b"\x00" * (-len(raw) % 4)


def write_netcdf(path: Path, dims: dict[str, int] | None = None, attrs: dict[str, object] | None = None) -> Path:
    """A classic NetCDF (CDF-1) file: dimensions and global attributes (text, int, double), no variables."""
    dims = dims or {"time": 0, "lat": 3}
    attrs = attrs or {"title": "sample grid", "Conventions": "CF-1.8", "version": 2}
    out = b"CDF\x01" + struct.pack(">i", 0)
    out += struct.pack(">ii", 10, len(dims)) + b"".join(_nc_name(n) + struct.pack(">i", size) for n, size in dims.items())
    out += struct.pack(">ii", 12, len(attrs))
    for name, value in attrs.items():
        if isinstance(value, str):
            raw = value.encode()
            out += _nc_name(name) + struct.pack(">ii", 2, len(raw)) + raw + b"\x00" * (-len(raw) % 4)
        elif isinstance(value, int):
            out += _nc_name(name) + struct.pack(">iii", 4, 1, value)
        else:
            out += _nc_name(name) + struct.pack(">iid", 6, 1, value)
    path.write_bytes(out + struct.pack(">ii", 0, 0))
    return path


def _dicom_element(group: int, element: int, vr: str, value: bytes) -> bytes:
    value += b"\x00" * (len(value) % 2) if vr in ("UI", "OB") else b" " * (len(value) % 2)
    if vr in ("OB", "OW", "SQ", "UN", "UT"):
        return struct.pack("<HH2sHI", group, element, vr.encode(), 0, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr.encode(), len(value)) + value


def write_dicom(path: Path, rows: int = 4, columns: int = 6, modality: str = "CT") -> Path:
    """A DICOM Part 10 file: preamble, DICM, file meta (explicit VR little endian), a few image tags
    and a patient name (which the reader must not return), pixel data."""
    meta = (_dicom_element(0x0002, 0x0002, "UI", b"1.2.840.10008.5.1.4.1.1.2")
            + _dicom_element(0x0002, 0x0010, "UI", b"1.2.840.10008.1.2.1"))
    body = (_dicom_element(0x0002, 0x0000, "UL", struct.pack("<I", len(meta))) + meta
            + _dicom_element(0x0008, 0x0020, "DA", b"20240301") + _dicom_element(0x0008, 0x0060, "CS", modality.encode())
            + _dicom_element(0x0008, 0x0070, "LO", b"Acme Imaging") + _dicom_element(0x0010, 0x0010, "PN", b"Doe^Jane")
            + _dicom_element(0x0028, 0x0010, "US", struct.pack("<H", rows))
            + _dicom_element(0x0028, 0x0011, "US", struct.pack("<H", columns))
            + _dicom_element(0x0028, 0x0100, "US", struct.pack("<H", 16))
            + _dicom_element(0x7FE0, 0x0010, "OW", bytes(rows * columns * 2)))
    path.write_bytes(bytes(128) + b"DICM" + body)
    return path


def write_pdf(path: Path, pages: int = 2, title: str = "Sample", author: str = "A. Writer") -> Path:
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    writer.add_metadata({"/Title": title, "/Author": author, "/Producer": "pypdf", "/CreationDate": "D:20240301101500Z"})
    with open(path, "wb") as out:
        writer.write(out)
    return path


def write_docx(path: Path, title: str = "Minutes", creator: str = "A. Writer", pages: int = 3) -> Path:
    """The parts of a .docx a reader needs: content types, a document, core and app properties."""
    core = ('<?xml version="1.0" encoding="UTF-8"?><cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/'
            'package/2006/metadata/core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms='
            '"http://purl.org/dc/terms/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            f'<dc:title>{title}</dc:title><dc:creator>{creator}</dc:creator>'
            '<dcterms:created xsi:type="dcterms:W3CDTF">2024-03-01T10:15:00Z</dcterms:created></cp:coreProperties>')
    app = ('<?xml version="1.0" encoding="UTF-8"?><Properties xmlns="http://schemas.openxmlformats.org/officeDocument/'
           f'2006/extended-properties"><Application>Microsoft Office Word</Application><Pages>{pages}</Pages></Properties>')
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/'
                     'package/2006/content-types"/>')
        out.writestr("word/document.xml", "<w:document/>")
        out.writestr("docProps/core.xml", core)
        out.writestr("docProps/app.xml", app)
    return path


def write_xlsx(path: Path, title: str = "Budget", creator: str = "A. Writer") -> Path:
    from openpyxl import Workbook

    book = Workbook()
    book.properties.title, book.properties.creator = title, creator
    book.active.append(["item", "amount"])
    book.save(path)
    return path


def _riff_chunk(kind: bytes, data: bytes) -> bytes:
    return kind + struct.pack("<I", len(data)) + data + b"\x00" * (len(data) % 2)


def write_avi(path: Path, width: int = 64, height: int = 48, frames: int = 50, fps: int = 25) -> Path:
    """An AVI (RIFF) with one MJPG video stream: the headers a player reads, empty frames."""
    avih = struct.pack("<10I4I", 1_000_000 // fps, 0, 0, 0x10, frames, 0, 1, 0, width, height, 0, 0, 0, 0)
    strh = struct.pack("<4s4sIHHIIIIIIII4h", b"vids", b"MJPG", 0, 0, 0, 0, 1, fps, 0, frames, 0, 0, 0, 0, 0, width, height)
    strf = struct.pack("<IiiHH4sIiiII", 40, width, height, 1, 24, b"MJPG", 0, 0, 0, 0, 0)
    strl = b"strl" + _riff_chunk(b"strh", strh) + _riff_chunk(b"strf", strf)
    hdrl = b"hdrl" + _riff_chunk(b"avih", avih) + _riff_chunk(b"LIST", strl)
    movi = b"movi" + b"".join(_riff_chunk(b"00dc", b"") for _ in range(frames))
    path.write_bytes(_riff_chunk(b"RIFF", b"AVI " + _riff_chunk(b"LIST", hdrl) + _riff_chunk(b"LIST", movi)))
    return path


def _box(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", 8 + len(data)) + kind + data


def write_mp4(path: Path, width: int = 320, height: int = 240, seconds: float = 2.0) -> Path:
    """An ISO BMFF (MP4) file: ftyp, and a moov with the movie header and one video track header."""
    since_1904 = int((dt.datetime(2024, 3, 1, 10, 15) - dt.datetime(1904, 1, 1)).total_seconds())
    matrix = struct.pack(">9i", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    mvhd = struct.pack(">B3xIIII", 0, since_1904, since_1904, 1000, int(seconds * 1000)) + struct.pack(
        ">iH10x", 0x10000, 0x100) + matrix + bytes(24) + struct.pack(">I", 2)
    tkhd = struct.pack(">B3sIIIII", 0, b"\x00\x00\x03", since_1904, since_1904, 1, 0, int(seconds * 1000)) + bytes(
        8) + struct.pack(">hhh2x", 0, 0, 0) + matrix + struct.pack(">II", width << 16, height << 16)
    moov = _box(b"mvhd", mvhd) + _box(b"trak", _box(b"tkhd", tkhd))
    path.write_bytes(_box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2mp41") + _box(b"moov", moov))
    return path


def _ebml(element_id: int, data: bytes) -> bytes:
    size = len(data) | 0x0100000000000000  # an 8-byte EBML size
    return element_id.to_bytes((element_id.bit_length() + 7) // 8, "big") + size.to_bytes(8, "big") + data


def write_mkv(path: Path, width: int = 640, height: int = 360, seconds: float = 3.0) -> Path:
    """A Matroska file: EBML header, segment info (duration, muxing app) and one video track."""
    header = _ebml(0x1A45DFA3, _ebml(0x4282, b"matroska") + _ebml(0x4287, b"\x04") + _ebml(0x4285, b"\x02"))
    info = _ebml(0x1549A966, _ebml(0x2AD7B1, (1_000_000).to_bytes(3, "big")) + _ebml(0x4489, struct.pack(">d", seconds * 1000))
                 + _ebml(0x4D80, b"batchflows samples") + _ebml(0x7BA9, b"Sample clip"))
    video = _ebml(0xE0, _ebml(0xB0, width.to_bytes(2, "big")) + _ebml(0xBA, height.to_bytes(2, "big")))
    track = _ebml(0xAE, _ebml(0xD7, b"\x01") + _ebml(0x83, b"\x01") + _ebml(0x86, b"V_MPEG4/ISO/AVC") + video)
    path.write_bytes(header + _ebml(0x18538067, info + _ebml(0x1654AE6B, track)))
    return path


def write_looping_jpeg(path: Path) -> Path:
    """A JPEG whose EXIF directory names itself as the next one: hachoir follows the chain forever,
    allocating as it goes (the hang behind hachoir issue #44)."""
    ifd = struct.pack("<HHHII", 1, 256, 4, 1, 16) + struct.pack("<I", 8)  # one entry, next IFD at offset 8: itself
    exif = b"Exif\x00\x00II" + struct.pack("<HI", 42, 8) + ifd
    frame = struct.pack(">BHHB", 8, 16, 16, 1) + b"\x01\x11\x00"  # SOF0: 16 x 16, one component
    path.write_bytes(b"\xff\xd8\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif
                     + b"\xff\xc0" + struct.pack(">H", len(frame) + 2) + frame + b"\xff\xd9")
    return path


def write_random(path: Path, size: int = 4096, seed: int = 7) -> Path:
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def write_truncated(path: Path, source: Path, keep: float = 0.5) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * keep))])
    return path


GENERATORS = {"wav": write_wav, "png": write_png, "fits": write_fits, "h5": write_hdf5, "nc": write_netcdf,
              "dcm": write_dicom, "pdf": write_pdf, "docx": write_docx, "xlsx": write_xlsx, "avi": write_avi,
              "mp4": write_mp4, "mkv": write_mkv}

FOLDERS = {"wav": "audio", "png": "images", "fits": "science", "h5": "science", "nc": "science", "dcm": "images",
           "pdf": "documents", "docx": "documents", "xlsx": "documents", "avi": "video", "mp4": "video",
           "mkv": "video"}


def write_sample_tree(root: Path, count: int = 36) -> list[Path]:
    """A small tree of `count` files under `root` (audio/, images/, ...): every format of GENERATORS in
    turn, then, when there is room, one file of random bytes (unsupported) and one PNG cut in half."""
    formats, paths = list(GENERATORS), []
    extras = 2 if count > len(formats) else 0
    for n in range(count - extras):
        kind = formats[n % len(formats)]
        folder = root / FOLDERS[kind]
        folder.mkdir(parents=True, exist_ok=True)
        paths.append(GENERATORS[kind](folder / f"sample-{n:03d}.{kind}"))
    if extras:
        (root / "other").mkdir(parents=True, exist_ok=True)
        paths.append(write_random(root / "other" / "random.bin"))
        paths.append(write_truncated(root / "other" / "cut.png", paths[formats.index("png")]))
    return paths
