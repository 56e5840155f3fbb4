"""MPEG program streams (.mpg, .vob) and transport streams (.ts, .m2ts), claimed only when their
structure checks out (a pack header followed by a start code; sync bytes every 188 or 192 bytes).
Packets of the first and last 256 KB give the MPEG-1/2 video sequence header (pixel size, frame
rate), the MPEG audio frame header (sample rate, channels) and the presentation time stamps whose
span is the duration."""
from __future__ import annotations

from dataclasses import dataclass, field

from tasks.files.audio import first_frame
from tasks.files.found import Found, HeaderError, Source, read_at

WINDOW = 256 << 10
FRAME_RATES = (None, 24000 / 1001, 24.0, 25.0, 30000 / 1001, 30.0, 50.0, 60000 / 1001, 60.0)


@dataclass
class Streams:
    """What the PES packets of the read windows showed."""

    times: dict[int, list[int]] = field(default_factory=dict)  # stream id -> PTS seen (90 kHz)
    video: tuple[int, int, float | None] | None = None
    audio: tuple[int, int] | None = None


def looks_like_program_stream(head: bytes) -> bool:
    if head[:4] != b"\x00\x00\x01\xba" or len(head) < 20:
        return False
    length = 14 + (head[13] & 7) if head[4] >> 6 == 1 else 12  # MPEG-2 or MPEG-1 pack header
    return head[length:length + 3] == b"\x00\x00\x01"


def ts_packet_size(head: bytes) -> int | None:
    """188 or 192 (a 4-byte time code before each packet) when the sync bytes line up, else None."""
    for size, first in ((188, 0), (192, 4)):
        count = (len(head) - first) // size
        if count >= 5 and all(head[first + n * size] == 0x47 for n in range(count)):
            return size
    return None


def _pts(data: bytes, at: int) -> int | None:
    """The PTS of the PES packet whose start code is at `at` (MPEG-2 or MPEG-1 syntax)."""
    if at + 14 > len(data):
        return None
    if data[at + 6] >> 6 == 2:  # MPEG-2 PES header
        if not data[at + 7] & 0x80:
            return None
        raw = data[at + 9:at + 14]
    else:  # MPEG-1: stuffing, optional STD buffer, then the time stamps
        pos = at + 6
        while pos < len(data) and data[pos] == 0xFF:
            pos += 1
        if pos < len(data) and data[pos] >> 6 == 1:
            pos += 2
        raw = data[pos:pos + 5]
        if len(raw) < 5 or raw[0] >> 4 not in (2, 3):  # '0010': PTS only, '0011': PTS and DTS
            return None
    if len(raw) < 5:
        return None
    return (raw[0] >> 1 & 7) << 30 | raw[1] << 22 | (raw[2] >> 1) << 15 | raw[3] << 7 | raw[4] >> 1


def _scan_pes(data: bytes, streams: Streams) -> None:
    at = data.find(b"\x00\x00\x01")
    while 0 <= at < len(data) - 4:
        code = data[at + 3]
        if code == 0xB3 and streams.video is None and at + 8 <= len(data):
            width, height = data[at + 4] << 4 | data[at + 5] >> 4, (data[at + 5] & 15) << 8 | data[at + 6]
            rate = data[at + 7] & 15
            streams.video = (width, height, FRAME_RATES[rate] if rate < len(FRAME_RATES) else None)
        elif 0xC0 <= code <= 0xEF or code == 0xBD:
            pts = _pts(data, at)
            if pts is not None:
                streams.times.setdefault(code, []).append(pts)
            if 0xC0 <= code <= 0xDF and streams.audio is None:
                found = first_frame(data[at + 9:at + 9 + 8192], chain=2)
                if found:
                    streams.audio = (found[1].sample_rate, found[1].channels)
        at = data.find(b"\x00\x00\x01", at + 3)


def _has_pat(data: bytes, size: int) -> bool:
    """A packet of PID 0 starting a program association table (table id 0) in the window."""
    first = 4 if size == 192 else 0
    for at in range(first, len(data) - 187, size):
        packet = data[at:at + 188]
        if packet[0] == 0x47 and packet[1] & 0x5F == 0x40 and packet[2] == 0 and packet[3] >> 4 & 1:
            pointer = 4 + (1 + packet[4] if packet[3] >> 4 & 3 == 3 else 0)
            if pointer < 188 and pointer + packet[pointer] + 1 < 188 and packet[pointer + packet[pointer] + 1] == 0:
                return True
    return False


def _ts_payloads(data: bytes, size: int) -> bytes:
    """The payloads of a window of transport packets, joined per PID (PES packets stay whole)."""
    first = 4 if size == 192 else 0
    start = data.find(b"\x47", first)
    while start >= 0 and start + size < len(data) and data[start + size] != 0x47:
        start = data.find(b"\x47", start + 1)
    by_pid: dict[int, list[bytes]] = {}
    for at in range(max(start, 0), len(data) - 187, size):
        packet = data[at:at + 188]
        if packet[0] != 0x47:
            continue
        pid, control = (packet[1] & 0x1F) << 8 | packet[2], packet[3] >> 4 & 3
        begin = 4 + (1 + packet[4] if control == 3 else 0)
        if control in (1, 3) and pid not in (0, 0x1FFF) and begin < 188:
            by_pid.setdefault(pid, []).append(packet[begin:])
    return b"".join(b"".join(parts) for parts in by_pid.values())


def read_mpeg_stream(source: Source, head: bytes) -> Found | None:
    size = None if looks_like_program_stream(head) else ts_packet_size(head)
    if size is None and not looks_like_program_stream(head):
        return None
    actual = source.size
    streams = Streams()
    windows = [read_at(source, 0, WINDOW)] + ([read_at(source, actual - WINDOW, WINDOW)] if actual > 2 * WINDOW else
                                             [read_at(source, WINDOW, WINDOW)] if actual > WINDOW else [])
    if size and not _has_pat(windows[0], size):
        return None  # sync bytes alone do not make a transport stream: it carries a program table
    for window in windows:
        _scan_pes(_ts_payloads(window, size) if size else window, streams)
    if not streams.times and streams.video is None and streams.audio is None:
        raise HeaderError("damaged MPEG stream: no packet with a time stamp or a stream header")
    spans = []
    for code, times in streams.times.items():
        span = (max(times) - min(times)) / 90000
        if 0xE0 <= code <= 0xEF and streams.video and streams.video[2]:
            span += 1 / streams.video[2]
        spans.append(span)
    width, height, rate = streams.video or (None, None, None)
    sample_rate, channels = streams.audio or (None, None)
    fields = {"duration_s": max(spans) if spans else None, "width": width, "height": height, "frame_rate": rate,
              "sample_rate": sample_rate, "channels": channels, "codec": "MPEG video" if streams.video else None}
    metadata = {"streams": sorted(f"0x{code:02x}" for code in streams.times), "packet_size": size}
    if size:
        return Found("mpeg-ts", "video/mp2t", "mpeg-ts-packets", fields, metadata)
    return Found("mpeg-ps", "video/mpeg", "mpeg-ps-packets", fields, metadata)
