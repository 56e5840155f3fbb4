"""Checks a run makes before its first paid call: inputs readable, outputs writable and not an input.
A URL (s3://, gs:// ...) is checked on its store: bucket, key, credentials, access (tasks/engine/storage.py)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from tasks.engine import storage
from tasks.engine.tables import InputError, file_format


def check_paths(inputs: Iterable[str | os.PathLike] = (), outputs: Iterable[str | os.PathLike] = (),
                folders: Iterable[str | os.PathLike] = (), files: Iterable[str | os.PathLike | None] = ()) -> None:
    """Every input a readable table of a known format, every other file given (templates, prices; None:
    not given) readable, every output file (or output folder) writable and none of them an input.
    Raises InputError with one line naming the path."""
    inputs, outputs, folders = ([_located(path) for path in paths] for paths in (inputs, outputs, folders))
    files = [None if path is None else _located(path) for path in files]
    urls = [str(path) for path in (*inputs, *outputs, *folders) if storage.is_url(path)]
    for path in inputs:
        check_input(path)
    inputs = [Path(path) for path in inputs if not storage.is_url(path)]
    for path in files:
        if path is not None:
            check_readable(path)
    for path in outputs:
        file_format(path)
        if storage.is_url(path):
            _remote_output(str(path), urls)
            continue
        _not_an_input(Path(path), inputs)
        if Path(path).is_dir():
            raise InputError(f"{path}: is a folder; the output must be a file")
        _probe(Path(path).parent, f".{Path(path).name}")
    for path in folders:
        if storage.is_url(path):
            _remote_output(storage.join(path, ".batchflows"), urls)
            continue
        _not_an_input(Path(path), inputs)
        if Path(path).exists() and not Path(path).is_dir():
            raise InputError(f"{path}: is a file; the output must be a folder")
        _probe(Path(path), ".batchflows")


def check_input(path: str | os.PathLike) -> None:
    """`path` is a readable file of a known table format."""
    file_format(path)
    check_readable(path)


def check_readable(path: str | os.PathLike) -> None:
    """`path` exists, is a file and can be read."""
    if storage.is_url(path):
        try:
            storage.probe_readable(str(path))
        except storage.StorageError as error:
            raise InputError(str(error)) from None
        return
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a file")
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({error.strerror})") from None


def _not_an_input(output: Path, inputs: list[Path]) -> None:
    for source in inputs:
        if output.resolve() == source.resolve() or (output.exists() and os.path.samefile(output, source)):
            raise InputError(f"{output}: is also the input; write the output to another file")


def _located(path: str | os.PathLike) -> str | Path:
    """A URL as given, a local path (or file:// URL) as a Path."""
    return str(path) if storage.is_url(path) else storage.local(path)


def _remote_output(url: str, urls: list[str]) -> None:
    """An output URL that is no input and where the credentials in use can write."""
    if urls.count(url) > 1:
        raise InputError(f"{url}: is also the input; write the output to another file")
    try:
        storage.probe_writable(url)
    except storage.StorageError as error:
        raise InputError(f"{error}; nothing was sent") from None


def _probe(folder: Path, prefix: str) -> None:
    """Create the folder when missing and write (then remove) a small file there."""
    probe = folder / f"{prefix}.probe-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise InputError(f"{folder}: cannot write the output there ({error.strerror or error}); nothing was sent") from None
