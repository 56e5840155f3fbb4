"""ISO base media files (MP4, M4A, MOV, 3GP, M4V) read box by box with seeks: the movie header
(duration, creation time), each track's handler, media header and first sample entry (codec, pixel
size, sample rate, channels), and the iTunes-style or QuickTime text tags. The format comes from the
ftyp brand. Sample tables are skipped, so a long movie costs a few reads."""
from __future__ import annotations

import datetime as dt
import struct
from dataclasses import dataclass, field

from tasks.files.found import Found, HeaderError, Source, text

TOP_LEVEL = {b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot", b"uuid", b"moof", b"mfra", b"pdin", b"sidx"}
CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"udta", b"ilst", b"edts"}
READ = {b"mvhd", b"tkhd", b"mdhd", b"hdlr", b"stsd", b"data", b"meta"}
ASSET_TAGS = {b"titl": "title", b"auth": "author", b"perf": "author"}  # 3GPP asset boxes under udta
TAGS = {b"\xa9nam": "title", b"\xa9ART": "author", b"aART": "album_artist", b"\xa9day": "created",
        b"\xa9too": "producer", b"\xa9swr": "producer", b"\xa9alb": "album", b"\xa9cmt": "comment"}
BRANDS = {b"qt  ": ("mov", "video/quicktime"), b"M4A ": ("m4a", "audio/mp4"), b"M4B ": ("m4a", "audio/mp4"),
          b"M4V ": ("m4v", "video/x-m4v"), b"M4VH": ("m4v", "video/x-m4v")}
NOT_MOVIES = {b"heic", b"heix", b"mif1", b"msf1", b"avif", b"crx "}  # images (HEIF, AVIF) and Canon raw: hachoir's
EPOCH_1904 = dt.datetime(1904, 1, 1)
MAX_BOXES = 5000


@dataclass
class Track:
    handler: str = ""
    timescale: int = 0
    duration: int = 0
    codec: str = ""
    width: int | None = None
    height: int | None = None
    sample_rate: float | None = None
    channels: int | None = None
    display: tuple[int, int] | None = None  # the track header's size (after the pixel aspect ratio)


@dataclass
class Movie:
    timescale: int = 0
    duration: int = 0
    created: str | None = None
    tracks: list[Track] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)


def looks_like_isobmff(head: bytes) -> bool:
    return len(head) >= 12 and head[4:8] in TOP_LEVEL and (struct.unpack_from(">I", head)[0] >= 8 or head[:4] ==
                                                           b"\x00\x00\x00\x01")


def _boxes(handle, start: int, end: int):
    """(type, data offset, data size) of the boxes between `start` and `end`."""
    at = start
    while at + 8 <= end:
        handle.seek(at)
        header = handle.read(16)
        size, kind = struct.unpack_from(">I4s", header)
        offset = at + 8
        if size == 1 and len(header) == 16:
            size, offset = struct.unpack_from(">Q", header, 8)[0], at + 16
        elif size == 0:
            size = end - at
        if size < offset - at:
            raise HeaderError(f"damaged box {kind!r} at {at}")
        yield kind, offset, size - (offset - at)
        at += size


def _date(seconds: int) -> str | None:
    return (EPOCH_1904 + dt.timedelta(seconds=seconds)).isoformat() if seconds else None  # 0: not set


def _walk(handle, start: int, end: int, movie: Movie, track: Track | None, count: list[int],
          parent: bytes = b"moov") -> None:
    """Read the boxes wanted under `parent`; a damaged box ends the walk of its container."""
    try:
        _walk_boxes(handle, start, end, movie, track, count, parent)
    except (HeaderError, struct.error):
        return


def _walk_boxes(handle, start: int, end: int, movie: Movie, track: Track | None, count: list[int],
                parent: bytes) -> None:
    for kind, offset, size in _boxes(handle, start, end):
        count[0] += 1
        if count[0] > MAX_BOXES:
            return
        if kind == b"trak":
            track = Track()
            movie.tracks.append(track)
        if kind in CONTAINERS or (kind in TAGS and parent == b"ilst"):
            _walk(handle, offset, offset + size, movie, track, count, kind)
            continue
        if kind not in READ:
            continue
        handle.seek(offset)
        data = handle.read(min(size, 4096))
        if kind == b"meta":  # a full box (ISO) or a plain container (QuickTime)
            skip = 0 if data[4:8] == b"hdlr" else 4
            _walk(handle, offset + skip, offset + size, movie, track, count, kind)
        elif kind == b"mvhd":
            wide = data[0] == 1
            created, _, movie.timescale, movie.duration = struct.unpack_from(">QQIQ" if wide else ">IIII", data, 4)
            movie.created = _date(created)
        elif kind == b"tkhd" and track:
            at = 88 if data[0] == 1 else 76
            if len(data) >= at + 8:
                width, height = struct.unpack_from(">II", data, at)
                track.display = (width >> 16, height >> 16) if width and height else None
        elif kind == b"mdhd" and track:
            wide = data[0] == 1
            _, _, track.timescale, track.duration = struct.unpack_from(">QQIQ" if wide else ">IIII", data, 4)
        elif kind == b"hdlr" and track and not track.handler:
            track.handler = data[8:12].decode("latin-1")
        elif kind == b"stsd" and track:
            _sample_entry(data[8:], track)
        elif kind == b"data" and len(data) > 8:
            _tag(handle, start, movie, data)


def _tag(handle, item_start: int, movie: Movie, data: bytes) -> None:
    """An ilst item's data box (the item's type is the box around it)."""
    handle.seek(item_start - 4)
    name = handle.read(4)
    if name in TAGS and struct.unpack_from(">I", data)[0] & 0xFFFFFF == 1:  # UTF-8 text
        movie.tags.setdefault(TAGS[name], data[8:].decode("utf-8", "replace"))


def _sample_entry(entry: bytes, track: Track) -> None:
    if len(entry) < 36:
        return
    track.codec = entry[4:8].decode("latin-1").strip()
    if track.handler == "vide":
        track.width, track.height = struct.unpack_from(">HH", entry, 32)
    elif track.handler == "soun":
        version = struct.unpack_from(">H", entry, 16)[0]
        if version == 2 and len(entry) >= 52:
            track.sample_rate, track.channels = struct.unpack_from(">dI", entry, 40)
        else:
            track.channels, rate = struct.unpack_from(">H", entry, 24)[0], struct.unpack_from(">I", entry, 32)[0] / 65536
            track.sample_rate = rate or None
            track.channels = _esds_channels(entry) or track.channels


def _esds_channels(entry: bytes) -> int | None:
    """The channel configuration of an AAC entry's AudioSpecificConfig (its sample entry says 2 anyway)."""
    at = entry.find(b"esds", 36)
    data = entry[at + 8:] if at > 0 else b""
    position, tag_wanted = 0, (3, 4, 5)
    for tag in tag_wanted:
        if position >= len(data) or data[position] != tag:
            return None
        position += 1
        while position < len(data) and data[position] & 0x80:  # the descriptor size: up to 4 bytes of 7 bits
            position += 1
        position += 1
        if tag == 3:
            flags = data[position + 2] if position + 2 < len(data) else 0
            position += 3 + (2 if flags & 0x80 else 0) + (2 if flags & 0x20 else 0)
            if flags & 0x40 and position < len(data):
                position += 1 + data[position]
        elif tag == 4:
            position += 13
    config = int.from_bytes(data[position:position + 4].ljust(4, b"\x00"), "big")
    shift = 32 - 5 - 4 - (24 if (config >> 23) & 15 == 15 else 0) - 4
    channels = config >> shift & 15
    return channels if 0 < channels < 7 else (8 if channels == 7 else None)


def _quicktime_text(handle, offset: int, size: int) -> str | None:
    """A QuickTime user-data text box (©nam under udta): length, language, text."""
    handle.seek(offset)
    data = handle.read(min(size, 4096))
    length = struct.unpack_from(">H", data)[0] if len(data) >= 4 else 0
    return text(data[4:4 + length].decode("utf-8", "replace")) if length else None


def read_isobmff(source: Source, head: bytes) -> Found | None:
    handle, actual, brand, moov, note = source.handle, source.size, b"", None, ""
    for kind, offset, size in _boxes(handle, 0, actual):
        if kind == b"ftyp":
            handle.seek(offset)
            brand = handle.read(4)
        elif kind == b"moov":
            moov = (offset, size)
        if offset + size > actual:
            note = f"cut file? the {kind.decode('latin-1')} box runs {offset + size - actual:,} bytes past the end"
    if brand in NOT_MOVIES:
        return None
    if moov is None:
        if not brand:
            return None  # no ftyp and no moov: not shown to be this format
        raise HeaderError("cut or damaged MP4: no movie box (moov)" + (f"; {note}" if note else ""))
    movie = Movie()
    _walk(handle, moov[0], min(moov[0] + moov[1], actual), movie, None, [0])
    for name, value in _udta_text(handle, moov):
        if value:
            movie.tags.setdefault(name, value)
    video = next((t for t in movie.tracks if t.handler == "vide" and t.width), None)
    if video is None:  # no sample entry read: the track header's size
        video = next((t for t in movie.tracks if t.display and t.handler in ("vide", "")), None)
        if video:
            video.width, video.height = video.display
    audio = next((t for t in movie.tracks if t.handler == "soun"), None)
    kind, mime = BRANDS.get(brand) or ((("3g2" if brand.startswith(b"3g2") else "3gp"), "video/3gpp")
                                       if brand.startswith(b"3g") else ("mp4", "video/mp4" if video else "audio/mp4"))
    if not brand:
        kind, mime = "mov", "video/quicktime"
    duration = movie.duration / movie.timescale if movie.timescale and movie.duration else None
    fields = {"duration_s": duration, "created": movie.created, "width": video.width if video else None,
              "height": video.height if video else None, "codec": (video or audio).codec if (video or audio) else None,
              "sample_rate": audio.sample_rate or audio.timescale if audio else None,
              "channels": audio.channels if audio else None, "title": text(movie.tags.get("title")),
              "author": text(movie.tags.get("author") or movie.tags.get("album_artist")),
              "producer": text(movie.tags.get("producer"))}
    if movie.tags.get("created"):
        fields["created"] = text(movie.tags["created"])
    metadata = {"brand": brand.decode("latin-1"), "tracks": [vars(t) for t in movie.tracks], "tags": movie.tags}
    return Found(kind, mime, "isobmff-boxes", fields, metadata, note)


def _udta_text(handle, moov: tuple[int, int]):
    """(field, text) of the QuickTime ©-boxes (a text box, not an ilst item) and 3GPP asset boxes
    directly under moov/udta."""
    for kind, offset, size in _boxes(handle, moov[0], moov[0] + moov[1]):
        if kind == b"udta":
            for inner, inner_offset, inner_size in _boxes(handle, offset, offset + size):
                if inner in TAGS:
                    handle.seek(inner_offset + 4)
                    if handle.read(4) != b"data":
                        yield TAGS[inner], _quicktime_text(handle, inner_offset, inner_size)
                elif inner in ASSET_TAGS:
                    handle.seek(inner_offset + 6)
                    raw = handle.read(min(inner_size - 6, 4096))
                    coded = raw.decode("utf-16") if raw[:2] in (b"\xfe\xff", b"\xff\xfe") else raw.decode("utf-8", "replace")
                    yield ASSET_TAGS[inner], text(coded)
