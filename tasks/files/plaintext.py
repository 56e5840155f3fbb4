"""Plain text, as ExifTool reports it: a file without control characters in Unicode with a byte order
mark (UTF-8, UTF-16, UTF-32), in UTF-8 or ASCII, or in an 8-bit or multi-byte legacy encoding
(ISO-8859, Windows code pages, EUC, Shift JIS: named by what can be told from the bytes alone).
HTML and XHTML are told apart from other XML and text; their head gives title, author and generator."""
from __future__ import annotations

import functools
import json
import re
from html.parser import HTMLParser

from tasks.files.found import Found, Source, read_at, text

TEXT_CONTROLS = "\x00-\x06\x0e-\x1a\x1c-\x1f"  # all below 32 but bell, backspace (overstrike), tabs, LF, FF, CR, ESC
CONTROL = re.compile(f"[{TEXT_CONTROLS}]")
LEGACY_CONTROL = re.compile(f"[{TEXT_CONTROLS}\x7f]".encode("latin-1"))
BOMS = ((b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be"), (b"\xef\xbb\xbf", "utf-8"),
        (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))  # longest first: UTF-32 LE starts like UTF-16 LE


def _decoded(head: bytes, codec: str) -> str | None:
    """The head as text in `codec`, allowing a character cut by the end of the read; None if it is not."""
    try:
        return head.decode(codec)
    except UnicodeDecodeError as error:
        if error.start < len(head) - 3:
            return None
        return head[:error.start].decode(codec)


def _bom(head: bytes) -> tuple[bytes, str | None]:
    """The byte order mark the head starts with and its codec (b"", None without one)."""
    return next(((bom, codec) for bom, codec in BOMS if head.startswith(bom)), (b"", None))


@functools.lru_cache(maxsize=4)  # asked by the reader choice and again by the text reader, of the same head
def text_encoding(head: bytes) -> str | None:
    """The encoding of a text file starting with `head`, None when it is not text."""
    if not head:
        return None
    bom, codec = _bom(head)
    if codec:
        decoded = _decoded(head[len(bom):], codec)
        return codec if decoded is not None and not CONTROL.search(decoded) else None
    decoded = _decoded(head, "utf-8")
    if decoded is not None:
        return ("us-ascii" if head.isascii() else "utf-8") if decoded and not CONTROL.search(decoded) else None
    # not UTF-8: a legacy encoding has no control bytes, and text has words (a blank or a line break)
    if LEGACY_CONTROL.search(head) or not re.search(rb"[ \t\r\n]", head):
        return None
    return "unknown-8bit" if re.search(rb"[\x80-\x9f]", head) else "iso-8859"


def looks_like_text(head: bytes) -> bool:
    return text_encoding(head) is not None


HTML_TAG = re.compile(r"<(!doctype\s+html|html)[\s>]", re.I)
HTML_HEAD_BYTES = 64 << 10  # read of an HTML file for its <head>
HTML_META = {"author": "author", "generator": "producer"}
JSON_BYTES = 4 << 20  # the most of a JSON file parsed to confirm it
JSON_EXTENSIONS = (".json", ".geojson", ".jsonld", ".webmanifest", ".ipynb")


def read_text(source: Source, head: bytes) -> Found | None:
    encoding = text_encoding(head)
    if encoding is None:
        return None
    bom = _bom(head)[0]
    codec = encoding if encoding.startswith("utf") else "latin-1"
    start = head[len(bom):].decode(codec, "replace").lstrip(" \t\r\n")
    newline = "CRLF" if "\r\n" in start else "LF" if "\n" in start else "CR" if "\r" in start else None
    metadata = {"encoding": encoding, "newlines": newline, "bom": bool(bom)}
    if starts_html(start):
        page = read_at(source, len(bom), HTML_HEAD_BYTES).decode(codec, "replace")
        found = HtmlHead.of(page)
        metadata.update(found.meta, title=found.title)
        fields = {"title": text(found.title), **{HTML_META[k]: text(v) for k, v in found.meta.items() if k in HTML_META}}
        return Found("html", "text/html", "html-head", fields, metadata)
    if start.startswith("<?xml"):
        return Found("xml", "application/xml", "text", {}, metadata)
    interpreter = script_interpreter(start)
    if interpreter:  # a script: named by its interpreter, as ExifTool does (`sh script` ...)
        return Found("script", f"text/x-{interpreter}", "text", {}, {**metadata, "interpreter": interpreter})
    if start.startswith("<?php"):
        return Found("php", "application/x-httpd-php", "text", {}, metadata)
    if start[:1] in ("{", "[") and is_json(source, len(bom), codec):
        return Found("json", "application/json", "text", {}, metadata)
    if source.extension == ".csv":  # comma-separated values are told by the name (as ExifTool does)
        return Found("csv", "text/csv", "text", {}, metadata)
    return Found("txt", "text/plain", "text", {}, metadata)


def script_interpreter(start: str) -> str | None:
    """The interpreter a `#!/path` line names (`#!/usr/bin/env python3` -> python3), else None."""
    words = start[2:].split("\n", 1)[0].split() if start.startswith("#!") else []
    if not words or not words[0].startswith("/"):
        return None
    if words[0].rsplit("/", 1)[-1] == "env":
        words = [word for word in words[1:] if not word.startswith("-") and "=" not in word]
    name = words[0].rsplit("/", 1)[-1] if words else ""
    return name if re.fullmatch(r"[A-Za-z0-9._+-]{1,40}", name) else None


def is_json(source: Source, start: int, codec: str) -> bool:
    """The whole file parses as one JSON value (read up to JSON_BYTES; a larger file counts when its
    name says JSON)."""
    if source.size - start > JSON_BYTES:
        return source.extension in JSON_EXTENSIONS
    try:
        json.loads(read_at(source, start, JSON_BYTES).decode(codec))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    return True


def starts_html(start: str) -> bool:
    """The text begins (after an XML declaration, blanks and comments) with an HTML doctype or <html>."""
    if start.startswith("<?xml"):
        start = start[start.find(">") + 1:].lstrip()
    while start.startswith("<!--"):
        end = start.find("-->")
        if end < 0:
            return False
        start = start[end + 3:].lstrip()
    return HTML_TAG.match(start) is not None


class HtmlHead(HTMLParser):
    """The <title> and <meta name=... content=...> of an HTML page's head (stops at <body>)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title: str | None = None
        self.meta: dict[str, str] = {}
        self._in_title, self._done = False, False

    @classmethod
    def of(cls, page: str) -> "HtmlHead":
        head = cls()
        try:
            head.feed(page)
        except (AssertionError, ValueError):  # markup the parser gives up on: keep what it read
            pass
        return head

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._done:
            return
        values = {name.lower(): value or "" for name, value in attrs}
        if tag == "title" and self.title is None:
            self._in_title, self.title = True, ""
        elif tag == "meta" and values.get("name") and values.get("content"):
            self.meta.setdefault(values["name"].lower(), values["content"])
        elif tag == "body":
            self._done = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag == "head":
            self._done = True

    def handle_data(self, data: str) -> None:
        if self._in_title and not self._done:
            self.title = (self.title or "") + data
