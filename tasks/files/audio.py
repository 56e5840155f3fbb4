"""Compressed audio through mutagen: MPEG audio (MP3/MP2, claimed only when consecutive frames
chain), FLAC, Ogg (Vorbis, Opus, FLAC, Speex, and Theora video: its frame size from the header),
AC-3. A cut Ogg file is told by its last page running past the end of the file."""
from __future__ import annotations

from dataclasses import dataclass

from tasks.files.found import Found, HeaderError, Source, read_at, tail, text

BITRATES = {(1, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
            (1, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
            (1, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
            (2, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
            (2, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)}
RATES = {1: (44100, 48000, 32000), 2: (22050, 24000, 16000), 2.5: (11025, 12000, 8000)}
FRAMES_TO_CHAIN = 4
SEARCH_BYTES = 64 << 10  # where the first frame may start after the ID3 tag
OGG_CODECS = {b"\x01vorbis": "vorbis", b"OpusHead": "opus", b"\x7fFLAC": "flac", b"Speex   ": "speex",
              b"\x80theora": "theora"}


@dataclass(frozen=True)
class Frame:
    version: float
    layer: int
    bit_rate: int
    sample_rate: int
    channels: int
    length: int


def frame_at(data: bytes, at: int) -> Frame | None:
    """The MPEG audio frame header at `at`, or None when the bytes are not one."""
    if at + 4 > len(data) or data[at] != 0xFF or data[at + 1] & 0xE0 != 0xE0:
        return None
    b1, b2, b3 = data[at + 1], data[at + 2], data[at + 3]
    version = {0: 2.5, 2: 2, 3: 1}.get((b1 >> 3) & 3)
    layer = {1: 3, 2: 2, 3: 1}.get((b1 >> 1) & 3)
    index, rate_index = b2 >> 4, (b2 >> 2) & 3
    if version is None or layer is None or index in (0, 15) or rate_index == 3:
        return None
    bit_rate = BITRATES[(1 if version == 1 else 2, layer if version == 1 or layer == 1 else 2)][index] * 1000
    rate, padding = RATES[version][rate_index], (b2 >> 1) & 1
    if layer == 1:
        length = (12 * bit_rate // rate + padding) * 4
    else:
        length = (72 if layer == 3 and version != 1 else 144) * bit_rate // rate + padding
    return Frame(version, layer, bit_rate, rate, 1 if b3 >> 6 == 3 else 2, length)


def first_frame(data: bytes, start: int = 0, chain: int = FRAMES_TO_CHAIN) -> tuple[int, Frame] | None:
    """(offset, frame) of the first frame from which `chain` frames follow one another with the
    same version, layer and sample rate (fewer if the data ends first, but at least two)."""
    at = data.find(b"\xff", start)
    while 0 <= at < len(data) - 4:
        frame = frame_at(data, at)
        if frame:
            nxt, count = at + frame.length, 1
            while count < chain and (following := frame_at(data, nxt)) and (following.version, following.layer,
                                                                              following.sample_rate) == (
                    frame.version, frame.layer, frame.sample_rate):
                nxt, count = nxt + following.length, count + 1
            if count >= chain or (count >= 2 and nxt >= len(data)):
                return at, frame
        at = data.find(b"\xff", at + 1)
    return None


def id3_size(head: bytes) -> int:
    """The length of an ID3v2 tag at the start (0 when there is none)."""
    if head[:3] != b"ID3" or len(head) < 10:
        return 0
    size = head[6] << 21 | head[7] << 14 | head[8] << 7 | head[9]
    return 10 + size + (10 if head[5] & 0x10 else 0)


def read_mpeg_audio(source: Source, head: bytes) -> Found | None:
    """MP3/MP2/MP1 when frames chain after any ID3 tag; None (not this format) otherwise."""
    start = id3_size(head)
    data = read_at(source, start, SEARCH_BYTES)
    found = first_frame(data)
    if found is None:
        return None
    from mutagen import MutagenError
    from mutagen.mp3 import MP3

    frame = found[1]
    try:
        audio = MP3(source.rewound())
    except MutagenError as error:
        raise HeaderError(f"damaged MPEG audio: {error}") from None
    tags = audio.tags or {}
    first = lambda key: text(tags[key].text[0]) if key in tags and getattr(tags[key], "text", None) else None  # noqa: E731
    info = audio.info
    fields = {"duration_s": info.length, "sample_rate": info.sample_rate, "channels": info.channels,
              "bit_rate": info.bitrate, "codec": f"MPEG-{frame.version:g} layer {frame.layer}",
              "title": first("TIT2"), "author": first("TPE1"), "created": first("TDRC"), "producer": first("TSSE")}
    metadata = {"mode": ("stereo", "joint stereo", "dual channel", "mono")[info.mode] if hasattr(info, "mode") else None,
                "bitrate_mode": str(getattr(info, "bitrate_mode", "")), "encoder": getattr(info, "encoder_info", ""),
                "id3": sorted(tags.keys())[:50] if hasattr(tags, "keys") else []}
    kind = {3: "mp3", 2: "mp2", 1: "mp1"}[frame.layer]
    return Found(kind, "audio/mpeg", "mutagen:MP3", fields, metadata)


def _vorbis_fields(tags) -> dict[str, str | None]:
    first = lambda key: text(tags[key][0]) if tags and key in tags and tags[key] else None  # noqa: E731
    return {"title": first("title"), "author": first("artist"), "created": first("date"), "producer": first("encoder")}


def read_flac(source: Source, head: bytes) -> Found:
    from mutagen import MutagenError
    from mutagen.flac import FLAC

    try:
        audio = FLAC(source.rewound())
    except MutagenError as error:
        raise HeaderError(f"damaged FLAC: {error}") from None
    info = audio.info
    fields = {"duration_s": info.length, "sample_rate": info.sample_rate, "channels": info.channels,
              "bit_rate": info.bitrate or None, "codec": "FLAC", **_vorbis_fields(audio.tags)}
    return Found("flac", "audio/flac", "mutagen:FLAC", fields,
                 {"bits_per_sample": info.bits_per_sample, "total_samples": info.total_samples},
                 flac_cut_note(source, info.total_samples, info.min_blocksize, info.max_blocksize))


def _crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc << 1 ^ 0x07) & 0xFF if crc & 0x80 else crc << 1
    return crc


def _flac_frame_number(data: bytes, at: int) -> int | None:
    """The number of the fixed-block-size frame whose header (CRC-checked) starts at `at`."""
    if at + 6 > len(data):
        return None
    block_code, rate_code, first = data[at + 2] >> 4, data[at + 2] & 15, data[at + 4]
    width = 1 if first < 0x80 else 8 - (first ^ 0xFF).bit_length()  # UTF-8-like: leading ones give the length
    if not 1 <= width <= 6:
        return None
    number = first & (0x7F >> (width - 1 if width > 1 else 0)) if width > 1 else first
    for byte in data[at + 5:at + 4 + width]:
        number = number << 6 | byte & 0x3F
    end = at + 4 + width + {6: 1, 7: 2}.get(block_code, 0) + {12: 1, 13: 2, 14: 2}.get(rate_code, 0)
    if end >= len(data) or _crc8(data[at:end]) != data[end]:
        return None
    return number


def flac_cut_note(source: Source, total: int, min_block: int, max_block: int) -> str:
    """A note when the last frame of a fixed-block-size FLAC is not the one its STREAMINFO implies."""
    if not total or min_block != max_block or not min_block:
        return ""
    expected, data = -(-total // min_block) - 1, tail(source, 65_536)
    at = data.rfind(b"\xff\xf8")
    while at >= 0:
        number = _flac_frame_number(data, at)
        if number is not None:
            return "" if number >= expected else f"cut file? the last frame is number {number:,} of {expected + 1:,}"
        at = data.rfind(b"\xff\xf8", 0, at)
    return "cut file? no FLAC frame at the end"


def _ogg_streams(source: Source) -> dict[str, bytes]:
    """The first packet of each stream that begins in the first pages, by codec."""
    data, at, found = read_at(source, 0, 64 << 10), 0, {}
    while data[at:at + 4] == b"OggS" and at + 27 <= len(data):
        flags, segments = data[at + 5], data[at + 26]
        lacing = data[at + 27:at + 27 + segments]
        body = at + 27 + segments
        if not flags & 2:  # the beginning-of-stream pages come first
            break
        packet = data[body:body + sum(lacing)]
        codec = next((name for magic, name in OGG_CODECS.items() if packet.startswith(magic)), None)
        if codec and codec not in found:
            found[codec] = packet
        at = body + sum(lacing)
    return found


def ogg_cut_note(source: Source) -> str:
    """A note when the last page runs past the end of the file."""
    end = tail(source, 65_536)
    at = end.rfind(b"OggS")
    if at < 0 or at + 27 > len(end):
        return "cut file? no complete Ogg page at the end"
    segments = end[at + 26]
    if at + 27 + segments > len(end) or at + 27 + segments + sum(end[at + 27:at + 27 + segments]) > len(end):
        return "cut file? the last Ogg page runs past the end of the file"
    return ""


def read_ogg(source: Source, head: bytes) -> Found:
    from mutagen import MutagenError
    from mutagen.oggflac import OggFLAC
    from mutagen.oggopus import OggOpus
    from mutagen.oggspeex import OggSpeex
    from mutagen.oggtheora import OggTheora
    from mutagen.oggvorbis import OggVorbis

    streams = _ogg_streams(source)
    if not streams:
        raise HeaderError("damaged Ogg file: no stream header a reader knows")
    readers = {"vorbis": OggVorbis, "opus": OggOpus, "flac": OggFLAC, "speex": OggSpeex, "theora": OggTheora}
    fields: dict = {"codec": "/".join(streams)}
    lengths = []
    for codec in streams:
        try:
            parsed = readers[codec](source.rewound())
        except MutagenError as error:
            raise HeaderError(f"damaged or cut Ogg {codec} stream: {error}") from None
        lengths.append(parsed.info.length)
        if codec == "theora":
            packet = streams["theora"]
            fields.update(width=int.from_bytes(packet[14:17], "big"), height=int.from_bytes(packet[17:20], "big"),
                          frame_rate=parsed.info.fps)
            continue
        fields.setdefault("sample_rate", 48000 if codec == "opus" else getattr(parsed.info, "sample_rate", None))
        fields.setdefault("channels", parsed.info.channels)
        fields.setdefault("bit_rate", getattr(parsed.info, "bitrate", None) or None)
        for key, value in _vorbis_fields(parsed.tags).items():
            fields.setdefault(key, value)
    fields["duration_s"] = max(lengths)
    kind, mime = ("ogv", "video/ogg") if "theora" in streams else (("opus", "audio/ogg") if list(streams) == ["opus"]
                                                                   else ("ogg", "audio/ogg"))
    return Found(kind, mime, "mutagen:Ogg", fields, {"streams": list(streams)}, ogg_cut_note(source))


def read_ac3(source: Source, head: bytes) -> Found:
    from mutagen import MutagenError
    from mutagen.ac3 import AC3

    try:
        info = AC3(source.rewound()).info
    except MutagenError as error:
        raise HeaderError(f"damaged AC-3: {error}") from None
    fields = {"duration_s": info.length, "sample_rate": info.sample_rate, "channels": ac3_channels(head),
              "bit_rate": info.bitrate, "codec": info.codec}
    return Found("ac3", "audio/ac3", "mutagen:AC3", fields, {})


def ac3_channels(head: bytes) -> int | None:
    """Channels of an AC-3 frame from its audio coding mode and LFE bit (mutagen counts mono as 2)."""
    if len(head) < 8 or head[5] >> 3 > 10:  # E-AC-3 (bsid 16): mutagen's count stands
        return None
    bits = int.from_bytes(head[6:8], "big")
    mode, skip = bits >> 13, 3
    skip += 2 * ((mode & 1 and mode != 1) + bool(mode & 4) + (mode == 2))
    return (2, 1, 2, 3, 3, 4, 4, 5)[mode] + (bits >> (15 - skip) & 1)
