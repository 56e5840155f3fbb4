"""Paths that may be URLs: inputs, outputs, trees and run state on object storage through fsspec
(`s3://` with the `s3` extra, `gs://` with `gcs`, `file://`, or a plain local path).

Local paths go through the same calls as before (builtin `open`, a `.partial` file renamed into
place). A URL is opened with fsspec: reads are ranged and streamed in blocks, and an output is
written uncommitted (fsspec's `autocommit=False`: on S3 a multipart upload) and committed only when
complete, so a crash never leaves a half output that looks whole. Credentials are the fsspec way
(the environment, a profile or an instance role: `AWS_*`, `GOOGLE_APPLICATION_CREDENTIALS`), or the
Prefect block named by `BATCHFLOWS_STORAGE_BLOCK` (tasks/engine/secrets.py), in every process.
"""
from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any

from tasks.engine.outcomes import FatalError
from tasks.engine.secrets import first_line, storage_options

READ_BLOCK = 8 << 20  # bytes per ranged read of a URL (and the most a read keeps in memory)
WRITE_BLOCK = 16 << 20  # bytes per uploaded part of an output (S3: 5 MiB at the least)
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}  # scheme -> its store: the extra that installs it
_NO_CREDENTIALS = {"NoCredentialsError", "PartialCredentialsError", "DefaultCredentialsError", "RefreshError"}


class StorageError(RuntimeError):
    """A URL that cannot be used: one line naming it and why (no bucket, no key, no credentials ...)."""


def scheme(path: str | os.PathLike) -> str:
    """The URL's scheme ("s3", "gs", "file" ...), "" for a plain path."""
    found = _SCHEME.match(str(path))
    return found.group(1).lower() if found else ""


def is_url(path: str | os.PathLike) -> bool:
    """True for a location fsspec must open (s3://, gs:// ...); file:// and plain paths are local."""
    return scheme(path) not in ("", "file")


def local(path: str | os.PathLike) -> Path:
    """A local path (file:// URLs become their path)."""
    text = str(path)
    return Path(text[len("file://"):] if scheme(text) == "file" else text)


def name_of(path: str | os.PathLike) -> str:
    """The last part of a path or URL (for messages)."""
    return str(path).rstrip("/").rsplit("/", 1)[-1]


def join(base: str | os.PathLike, *parts: str) -> str:
    """`base` / parts, keeping a URL a URL."""
    if is_url(base):
        return "/".join([str(base).rstrip("/"), *parts])
    return str(local(base).joinpath(*parts))


def shown(path: str | os.PathLike) -> str:
    """How a location is shown in a summary: a URL as given, a local path absolute."""
    return str(path) if is_url(path) else os.path.abspath(local(path))


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) for a URL, with the credentials of the Prefect block that
    BATCHFLOWS_STORAGE_BLOCK names for its store (else the fsspec way); a missing extra or a block
    that cannot be loaded is one line saying which."""
    import fsspec

    try:
        options = storage_options(_EXTRAS.get(scheme(url), "")) if is_url(url) else {}
    except FatalError as error:
        raise StorageError(f"{url}: {error}") from None
    try:
        return fsspec.core.url_to_fs(url, **options)
    except (ImportError, ValueError) as error:
        extra = _EXTRAS.get(scheme(url))
        hint = f": pip install 'batchflows[{extra}]'" if extra else ""
        raise StorageError(f"{url}: cannot open {scheme(url)}:// locations ({error}){hint}") from None


def explain(url: str, error: BaseException) -> StorageError:
    """A storage library's error as one line naming the URL and what to do."""
    kind = type(error).__name__
    if kind in _NO_CREDENTIALS:
        return StorageError(f"{url}: no credentials for {scheme(url)}:// ({error}); set them the usual way "
                            "(AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY or AWS_PROFILE, an instance role; "
                            "GOOGLE_APPLICATION_CREDENTIALS for gs://), or name a Prefect credentials block in "
                            "BATCHFLOWS_STORAGE_BLOCK")
    if isinstance(error, PermissionError):
        return StorageError(f"{url}: access denied ({first_line(error)}); the credentials in use may not do this")
    if isinstance(error, FileNotFoundError):
        return StorageError(f"{url}: {_missing(url)}")
    if isinstance(error, StorageError):
        return error
    return StorageError(f"{url}: {kind}: {first_line(error)}")


def _missing(url: str) -> str:
    """"no such bucket" or "no such file" for a URL that was not found."""
    fs, path = filesystem(url)
    bucket = path.split("/", 1)[0]
    if bucket and bucket != path:
        try:
            fs.info(bucket)
        except FileNotFoundError:
            return f"no such bucket {bucket!r}"
        except Exception:  # the bucket cannot be asked about: say what was asked for
            pass
    return "no such file"


def info(url: str) -> dict[str, Any]:
    """A URL's details as its store gives them: `type`, `size`, `ETag`, `LastModified` ..."""
    fs, inside = filesystem(url)
    try:
        return fs.info(inside)
    except Exception as error:
        raise explain(url, error) from None


def is_file(path: str | os.PathLike) -> bool:
    """The path or URL is a file (False when missing; a URL's other problems raise StorageError)."""
    if not is_url(path):
        return local(path).is_file()
    fs, inside = filesystem(str(path))
    try:
        return fs.info(inside).get("type") == "file"
    except FileNotFoundError:
        return False
    except Exception as error:
        raise explain(str(path), error) from None


def open_input(path: str | os.PathLike, mode: str = "rb", **text: Any) -> IO:
    """Open for reading: builtin `open` for a local path; for a URL a seekable file of ranged reads,
    READ_BLOCK bytes at a time (memory flat with the file's size). `text` is open()'s encoding,
    errors and newline for mode "r"."""
    if not is_url(path):
        return open(local(path), mode, **text)
    fs, inside = filesystem(str(path))
    try:
        handle = fs.open(inside, "rb", block_size=READ_BLOCK, cache_type="readahead")
    except Exception as error:
        raise explain(str(path), error) from None
    return handle if "b" in mode else io.TextIOWrapper(handle, **text)


class AtomicOutput:
    """A file that appears at `target` only on `commit()`, whole; `discard()` leaves nothing.

    Local: a `.<name>.partial` file beside the target, renamed into place. URL: fsspec's uncommitted
    write (S3: a multipart upload that the commit completes; a killed run leaves an incomplete upload
    that no listing shows). A writer opens it once, as `text()` or as a `sink()` (a local path, or a
    binary file for a URL; `seekable=True` spools a URL's bytes on local disk, uploaded at the commit,
    for writers that seek: xlsx)."""

    def __init__(self, target: str | os.PathLike):
        self.target = str(target)
        self.remote = is_url(target)
        self.path = local(target)
        self.tmp = self.path.with_name(f".{self.path.name}.partial")
        self._upload: Any = None  # the URL's uncommitted fsspec file
        self._spool: IO | None = None
        self._text: IO | None = None
        if not self.remote:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def text(self, **options: Any) -> IO:
        """A text file to write (open()'s encoding and newline); closing it is the writer's."""
        self._text = open(self.tmp, "w", **options) if not self.remote else io.TextIOWrapper(self._open(), **options)
        return self._text

    def sink(self, seekable: bool = False) -> str | IO:
        """What a library writes to: the local temporary path, or a binary file for a URL."""
        if not self.remote:
            return str(self.tmp)
        if seekable:
            self._spool = tempfile.TemporaryFile()
            return self._spool
        return self._open()

    def _open(self) -> Any:
        fs, inside = filesystem(self.target)
        try:
            self._upload = fs.open(inside, "wb", block_size=WRITE_BLOCK, autocommit=False)
        except Exception as error:
            raise explain(self.target, error) from None
        return self._upload

    @property
    def written(self) -> bool:
        return self.tmp.exists() if not self.remote else self._upload is not None or self._spool is not None

    def commit(self) -> str:
        """Move (local) or commit (URL) the output into place, once its writer has closed it."""
        if not self.remote:
            os.replace(self.tmp, self.path)
            return self.target
        try:
            if self._spool is not None:
                self._spool.seek(0)
                shutil.copyfileobj(self._spool, self._open(), 1 << 20)
                self._spool.close()
            self._upload.close()  # uploads the last part; nothing is visible before the commit
            self._upload.commit()
        except Exception as error:
            raise explain(self.target, error) from None
        return self.target

    def discard(self) -> None:
        """Throw away what was written; the target is untouched."""
        if self._text is not None and self.remote:
            self._text.detach()  # its buffer is thrown away below, not flushed
        elif self._text is not None:
            self._text.close()
        if self._spool is not None:
            self._spool.close()
        if self._upload is not None:
            self._upload.discard()
            self._upload.closed = True  # nothing left to flush when it is collected
        if not self.remote:
            self.tmp.unlink(missing_ok=True)


def probe_readable(url: str) -> None:
    """One byte of the URL read (ranged): raises StorageError with the reason it cannot be."""
    try:
        kind = info(url).get("type")
        if kind != "file":
            raise StorageError(f"{url}: is a folder (a prefix), not a file")
        fs, inside = filesystem(url)
        fs.read_block(inside, 0, 1)
    except StorageError:
        raise
    except Exception as error:
        raise explain(url, error) from None


def probe_writable(url: str) -> None:
    """Write then remove a small object beside the URL: raises StorageError if that fails."""
    fs, inside = filesystem(url)
    probe = f"{inside.rstrip('/')}.batchflows-probe-{os.getpid()}"
    try:
        fs.pipe_file(probe, b"")
        fs.rm_file(probe)
    except Exception as error:
        raise explain(url, error) from None


def local_dir(work_dir: str | os.PathLike) -> Path:
    """The local disk of a work dir: the folder itself, or for a URL work store the folder the
    run keeps what needs a local disk (SQLite stores, staged chunks, rate-limit slots):
    `$BATCHFLOWS_LOCAL_DIR` (default ~/.batchflows) / <scheme> / <the URL's path>."""
    if not is_url(work_dir):
        return local(work_dir)
    base = Path(os.environ.get("BATCHFLOWS_LOCAL_DIR") or Path.home() / ".batchflows")
    return base.joinpath(scheme(work_dir), *[part for part in str(work_dir).split("://", 1)[1].split("/") if part])


def source(path: str | os.PathLike) -> str | IO:
    """What a library that takes a path or a file reads from (pyarrow, openpyxl, zipfile): the local
    path, or a URL opened for ranged reads."""
    return str(local(path)) if not is_url(path) else open_input(path)


def estimate_lines(url: str, sample: int = 1 << 20) -> int:
    """Lines in a URL's object estimated from its first `sample` bytes (one ranged read, not a download)."""
    size = int(info(url).get("size") or 0)
    with open_input(url) as handle:
        head = handle.read(sample)
    if len(head) >= size:
        return head.count(b"\n") + (not head.endswith(b"\n") and bool(head))
    return round(head.count(b"\n") * size / max(len(head), 1))
