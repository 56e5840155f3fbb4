"""Which reader takes a file: each format is recognised by its structure at the start of the file
(the extension only breaks ties for weak signatures such as AC-3's two sync bytes); the readers
live in the modules beside this one. A reader returns a `Found`, or None when a closer look shows
the file is not its format (hachoir's turn then), or raises `HeaderError` for a damaged header."""
from __future__ import annotations

from typing import Callable

from tasks.files import (
    archives,
    audio,
    dicom,
    documents,
    images,
    isobmff,
    mpeg,
    pcm,
    plaintext,
    science,
)
from tasks.files.found import Found, Source

HEAD_BYTES = 4096
Reader = Callable[[Source, bytes], "Found | None"]
MPEG_AUDIO_EXTENSIONS = (".mp3", ".mp2", ".mp1", ".mpa")


def _postscript(head: bytes) -> Reader | None:
    if head.startswith((b"%!PS-AdobeFont", b"%!FontType1")):
        return documents.read_type1
    if head.startswith(b"\x80\x01") and head[6:].startswith((b"%!PS-AdobeFont", b"%!FontType1")):
        return documents.read_type1
    if head.startswith((b"%!PS", documents.DOS_EPS)):
        return documents.read_postscript
    if head.startswith(b"StartFontMetrics"):
        return documents.read_afm
    return None


def readers_for(head: bytes, source: Source) -> list[Reader]:
    """The readers to try, in order, for a file starting with `head` (hachoir comes after them): the
    format's own, then plain text for a text file that is not that format (HTML with an inline SVG)."""
    readers = _format_readers(head, source)
    if plaintext.read_text not in readers and plaintext.looks_like_text(head):
        readers.append(plaintext.read_text)
    return readers


def _format_readers(head: bytes, source: Source) -> list[Reader]:
    extension = source.extension
    if head.startswith(b"SIMPLE  ="):
        return [science.read_fits]
    if science.hdf5_offset(head) is not None:
        return [science.read_hdf5]
    if head[:4] in (b"CDF\x01", b"CDF\x02", b"CDF\x05"):
        return [science.read_netcdf]
    if head[128:132] == b"DICM":
        return [dicom.read_dicom]
    if b"%PDF-" in head[:1024]:
        return [documents.read_pdf]
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return [archives.read_zip]
    if head.startswith((archives.AR_MAGIC, archives.THIN_AR_MAGIC)):
        return [archives.read_ar]
    if pcm.looks_like_wav(head):
        return [pcm.read_wav]
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return [pcm.read_aiff]
    if images.image_kind(head):
        return [images.read_image]
    if isobmff.looks_like_isobmff(head):
        return [isobmff.read_isobmff]
    if head[:4] == b"OggS":
        return [audio.read_ogg]
    if head[:4] == b"fLaC":
        return [audio.read_flac]
    postscript = _postscript(head)
    if postscript:
        return [postscript]
    if documents.looks_like_svg(head):
        return [documents.read_svg]
    if mpeg.looks_like_program_stream(head) or mpeg.ts_packet_size(head) and not plaintext.looks_like_text(head):
        return [mpeg.read_mpeg_stream]
    if head[:3] == b"ID3" or head[:1] == b"\xff" or extension in MPEG_AUDIO_EXTENSIONS:
        return [audio.read_mpeg_audio]
    if head[:2] == b"\x0b\x77" and extension in (".ac3", ".eac3"):
        return [audio.read_ac3]
    if dicom.looks_like_acr_nema(head):
        return [dicom.read_dicom]
    return []
