"""File metadata of a bucket prefix (s3://bucket/prefix, gs://...): the objects listed lazily, a
page at a time (never the whole listing in memory), staged as the same JSON lines as a local tree,
with the object's ETag next to its size and modification time (the keys a rerun resumes on).

Parsing needs a file: an object up to the download cap is fetched whole (one GET) into a temporary
file on the worker and parsed there like a local one; an empty object is answered from its size
alone; a larger one gets two ranged reads, its first and last `WINDOW` bytes, in a sparse file of
its size: the readers that need only a file's ends (headers, trailers, an index at the end) answer
from them, and the row says it was a partial read."""
from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from tasks.engine import storage
from tasks.files.filetree import _matches

WINDOW = 1 << 20  # bytes read from each end of an object larger than the cap
PARTIAL_NOTE = "partial read: the object is larger than the download cap ({cap:,} bytes): only its first and last {window:,} bytes were read"


def iter_objects(url: str) -> Iterator[dict[str, Any]]:
    """Every object under the URL (a prefix, read as a folder; or one object), a listing page at a time."""
    fs, path = storage.filesystem(url)
    try:
        if fs.isfile(path):
            yield fs.info(path)
            return
        prefix = path.rstrip("/") + "/"
        if hasattr(fs, "_iterdir"):  # s3fs: the listing's pages as they come
            from fsspec.asyn import sync

            bucket, _, key_prefix = prefix.partition("/")
            pages = fs._iterdir(bucket, delimiter="", prefix=key_prefix)
            while True:
                try:
                    item = sync(fs.loop, pages.__anext__)
                except StopAsyncIteration:
                    return
                if item.get("type") == "file":
                    yield item
        else:
            yield from (item for item in fs.find(prefix, detail=True).values() if item.get("type") == "file")
    except storage.StorageError:
        raise
    except Exception as error:
        raise storage.explain(url, error) from None


def _stamp(value: Any) -> str | None:
    """An object's modification time as the tree's mtime text (UTC, ISO 8601)."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
    return None if value is None else str(value)


def object_entry(url: str, item: dict[str, Any]) -> dict[str, Any]:
    """A listed object as a row: its URL, exact name bytes, size, mtime and ETag."""
    scheme = storage.scheme(url)
    location = f"{scheme}://{item['name']}"
    return {"path": location, "path_b64": base64.b64encode(location.encode("utf-8")).decode("ascii"),
            "size": int(item.get("size") or 0), "mtime": _stamp(item.get("LastModified") or item.get("updated")),
            "etag": str(item.get("ETag") or item.get("etag") or item.get("md5Hash") or "")}


def stage_objects(root: str, target: Path, include: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> int:
    """Write one JSON line per object under `root` to `target` as the listing goes; returns the count."""
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = len(storage.filesystem(root)[1].rstrip("/")) + 1
    count = 0
    with open(target, "w", encoding="utf-8") as handle:
        for item in iter_objects(root):
            relative = item["name"][prefix:].encode("utf-8")
            if (exclude and _matches(relative, exclude)) or (include and not _matches(relative, include)):
                continue
            handle.write(json.dumps(object_entry(root, item), ensure_ascii=False) + "\n")
            count += 1
    return count


@dataclass(frozen=True)
class Fetched:
    """A local copy of an object for the parsers: its path, the bytes read, and a note when partial."""

    path: str
    bytes_read: int
    note: str = ""


def fetch_object(url: str, size: int, cap: int) -> Fetched:
    """The object in a temporary file (the caller removes it): whole up to `cap` bytes, else its two ends."""
    fs, path = storage.filesystem(url)
    handle, local = tempfile.mkstemp(prefix="batchflows-object-", suffix=os.path.splitext(storage.name_of(url))[1][:16])
    try:
        with os.fdopen(handle, "wb") as out:
            if size == 0:
                return Fetched(local, 0)
            if size <= cap:
                with fs.open(path, "rb", block_size=storage.READ_BLOCK) as source:
                    shutil.copyfileobj(source, out, storage.READ_BLOCK)
                return Fetched(local, size)
            out.truncate(size)  # sparse: the middle is never read
            out.write(fs.cat_file(path, start=0, end=WINDOW))
            out.seek(size - WINDOW)
            out.write(fs.cat_file(path, start=size - WINDOW, end=size))
            return Fetched(local, 2 * WINDOW, PARTIAL_NOTE.format(cap=cap, window=WINDOW))
    except Exception as error:
        os.unlink(local)
        raise storage.explain(url, error) from None


def prefix_visible(root: str) -> str:
    """Run on every worker before any chunk: "" when this machine can list the prefix, else why not."""
    import socket

    try:
        next(iter_objects(root), None)
    except storage.StorageError as error:
        return f"{error} (on worker {socket.gethostname()}: give it the same credentials as the flow)"
    return ""
