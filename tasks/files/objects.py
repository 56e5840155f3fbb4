"""File metadata of a bucket prefix (s3://bucket/prefix, gs://...): the objects listed lazily, a
page at a time (never the whole listing in memory), staged as the same JSON lines as a local tree,
with the object's ETag next to its size and modification time (the keys a rerun resumes on).

The parsers read an object through a seekable file (`open_object`, in the parser process) that
fetches fixed blocks of it by ranged reads as the readers first touch them, so a header costs a
block or two, not the object: a 100 MB video is described from its header and index boxes. A
parser that needs a file whole (a damaged PDF rebuilt by a scan) gets it, block by block, up to a
cap on the bytes one object may fetch; past it the read fails and the row says so. The bytes and
requests each object cost go into its metadata (`bucket_read`)."""
from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from fsspec.caching import BlockCache, register_cache

from tasks.engine import storage
from tasks.files.filetree import _matches
from tasks.files.found import Source

BLOCK = 256 << 10  # bytes per ranged read: a header and its neighbours in one request
MAX_BLOCKS = 32  # blocks an open object keeps in memory (8 MiB)
CAP_NOTE = ("read cap reached: describing this object ({size:,} bytes) needed more than the {cap:,} bytes "
            "--max-download-mb lets one object fetch")


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


class ReadsCounted(BlockCache):
    """fsspec's block cache (fixed blocks fetched on first touch, the last `maxblocks` kept) whose
    fetches go through a `RangedReads`, which counts and caps them."""

    name = "batchflows-counted-blocks"

    def __init__(self, blocksize: int, fetcher: Callable[[int, int], bytes], size: int, reads: RangedReads,
                 maxblocks: int = MAX_BLOCKS):
        super().__init__(blocksize, reads.counted(fetcher), size, maxblocks)


register_cache(ReadsCounted, clobber=True)


@dataclass
class RangedReads:
    """What the ranged reads of one object fetched (bytes, requests), and why a read failed: the cap
    reached or the store's error. The parsing libraries may swallow an exception raised in a read
    (hachoir catches them all), so the caller asks `problem` after the parse."""

    url: str
    size: int
    cap: int
    bytes: int = 0
    requests: int = 0
    problem: str = ""
    capped: bool = False

    def counted(self, fetch: Callable[[int, int], bytes]) -> Callable[[int, int], bytes]:
        def fetch_counted(start: int, end: int) -> bytes:
            if self.problem:  # a library that carries on after a failed read gets no more
                raise storage.StorageError(self.problem)
            if self.bytes + min(end, self.size) - start > self.cap:
                self.capped = True
                self.problem = CAP_NOTE.format(cap=self.cap, size=self.size)
                raise storage.StorageError(self.problem)
            try:
                data = fetch(start, end)
            except Exception as error:
                failure = storage.explain(self.url, error)
                self.problem = str(failure)
                raise failure from None
            self.bytes += len(data)
            self.requests += 1
            return data

        return fetch_counted

    @property
    def report(self) -> dict[str, int]:
        """What the row's metadata says of the reads."""
        return {"bytes": self.bytes, "requests": self.requests, "object_size": self.size}


def open_object(url: str, size: int, cap: int) -> tuple[Source, RangedReads]:
    """The object as a seekable file for the readers, which fetches BLOCK-byte ranges as they are
    first read (no request before the first read: the size comes from the listing); at most `cap`
    bytes in all. The caller closes the source's handle."""
    fs, path = storage.filesystem(url)
    reads = RangedReads(url, size, cap)
    try:
        handle = fs.open(path, "rb", block_size=BLOCK, cache_type=ReadsCounted.name, cache_options={"reads": reads},
                         size=size)
    except Exception as error:
        raise storage.explain(url, error) from None
    return Source(handle, url, size), reads


def prefix_visible(root: str) -> str:
    """Run on every worker before any chunk: "" when this machine can list the prefix, else why not."""
    import socket

    try:
        next(iter_objects(root), None)
    except storage.StorageError as error:
        return f"{error} (on worker {socket.gethostname()}: give it the same credentials as the flow)"
    return ""
