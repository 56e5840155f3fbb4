"""File metadata: describe every file under a folder (images, sound, video, documents, scientific
data) with hachoir and small header readers, in parser processes that a per-file timeout and memory
cap can stop.

The tree is walked lazily into a staged list (tasks/files/filetree.py); the chunk engine runs it, each
chunk sending its files to killable parser processes (tasks/files/sandbox.py running tasks/files/metadata.py).
Output, one row per walked entry in walk order: path, path_b64 (the name's exact bytes), size, mtime,
format, mime, parser, the common fields, metadata_json, elapsed_ms, status (ok / unsupported /
failed / timeout) and error. A rerun parses only the files whose (path, size, mtime) changed.

The root may be a bucket prefix (s3://bucket/prefix, gs://...): the objects are listed lazily
(tasks/files/objects.py), each row has the object's ETag too (a rerun parses only the objects whose
(key, size, ETag) changed), and the parser process opens each object itself and reads it in ranges,
only the blocks the readers touch (tasks/files/objects.py), at most `max_download_mb` of it.
"""
from __future__ import annotations

import base64
import functools
import os
import socket
import time
import uuid
from typing import Annotated, Any

from prefect import flow
from pydantic import Field

from tasks.engine import storage
from tasks.engine.job import Job, RunOptions
from tasks.engine.outcomes import Partial
from tasks.engine.params import Cli, Help, OutputFile, Positive, Rate, Runner, Workers
from tasks.engine.preflight import check_paths
from tasks.engine.run import default_work_dir, run_job
from tasks.engine.tables import InputError
from tasks.files.filetree import KnownFiles, entry_problem, stage_tree
from tasks.files.metadata import FIELDS, INTEGERS, NUMBERS, VERSION
from tasks.files.objects import prefix_visible, stage_objects
from tasks.files.sandbox import DEPTH, Answer, Sandbox, stop_idle_children

RESULT_COLUMNS = (*FIELDS, "metadata_json", "elapsed_ms")
COLUMN_TYPES = {**dict.fromkeys(INTEGERS, "Int64"), **dict.fromkeys((*NUMBERS, "elapsed_ms"), "float64")}
LIMITED = ("timeout", "memory", "died")  # sandbox problems that other limits might not meet
BUCKET_PROCESSES_PER_CPU = 4  # a parser process of a bucket's objects mostly waits for its ranged reads


def outcome_of(answer: Answer) -> dict[str, Any]:
    """The sandbox's answer as the row's outcome: status, error and the result columns."""
    if answer.problem:
        value = {"status": "timeout" if answer.problem == "timeout" else "failed", "error": answer.error}
    else:
        value = answer.value
    return {**{name: value.get(name) for name in RESULT_COLUMNS}, "status": value["status"],
            "error": value["error"], "elapsed_ms": answer.elapsed_ms}


def record_fields(outcome: dict[str, Any]) -> dict[str, Any]:
    """An outcome (from a parse or from the store) as a journal record's status, error and result."""
    return {"status": outcome["status"], "error": outcome["error"],
            "result": {name: outcome[name] for name in RESULT_COLUMNS}}


def not_here(path: bytes, reason: str, flow_host: str) -> str:
    """The reason, with a hint when the file is missing on a worker that is not the flow's machine."""
    host = socket.gethostname()
    if host == flow_host or os.path.lexists(os.path.dirname(path) or b"."):
        return reason
    return (f"{reason} on worker {host}: the tree is not mounted there (the flow listed it on {flow_host}; "
            f"mount it at the same path on every worker)")


async def describe_file(row: dict[str, Any], clients: dict[str, Any], *, limits: str, flow_host: str,
                        download_cap: int = 0) -> dict[str, Any] | Partial:
    """Chunk-engine handler for one walked entry: a parse in the sandbox (the flow answers entries
    known from an earlier run itself). `_limits` in the result tells the flow to remember it. An
    object of a bucket is opened by the parser process itself and read in ranges, at most
    `download_cap` bytes of it."""
    path = base64.b64decode(row["path_b64"])
    location = os.fsdecode(path)
    if storage.is_url(location):
        arguments: tuple = (location, int(row["size"]), download_cap)
    else:
        problem = entry_problem(path)
        if problem:
            return Partial(dict.fromkeys(RESULT_COLUMNS), not_here(path, problem[1], flow_host), problem[0])
        arguments = (location,)
    answer = await clients["parser"].call(*arguments)
    fields = record_fields(outcome_of(answer))
    capped = bool(answer.value and answer.value.get("read_cap_reached"))
    limited = answer.problem in LIMITED or capped  # an outcome of the cap counts only under the same cap
    result = {**fields["result"], "_limits": f"{limits} {download_cap if capped else ''}".strip() if limited else ""}
    if fields["status"] == "ok" and not fields["error"]:
        return result
    return Partial(result, fields["error"], fields["status"])  # ok with a parser's note, or not ok


def tree_visible(root: str) -> str:
    """Run on every worker before any chunk: "" when this machine sees the tree, else why not."""
    if os.path.lexists(root):
        return ""
    return f"{root} does not exist on worker {socket.gethostname()}: mount the tree at the same path on every worker"


Patterns = Annotated[list[str] | None, Help("shell patterns, case-insensitive, on names (or on paths below the "
                                            "root when they contain a /); repeatable")]


@flow(name="file-metadata")
def file_metadata(
    root: Annotated[str, Field(min_length=1), Help("folder to walk (or one file), or a bucket prefix: s3://bucket/prefix"),
                    Cli(positional=True)],
    output_path: OutputFile,
    include: Patterns = None,
    exclude: Patterns = None,
    timeout: Annotated[Rate, Help("seconds per file before its parser is killed")] = 10.0,
    memory_mb: Annotated[int, Field(ge=128), Help("address-space cap of a parser process, MB (Python and the "
                                                  "parsers take ~60)")] = 1024,
    runner: Runner = "thread",
    workers: Workers = None,
    concurrency: Annotated[Positive | None, Help("parser processes for the whole run (default: CPU count, 4 per CPU "
                                                 "for a bucket prefix; at least one per chunk running at once)")] = None,
    chunk_size: Annotated[Positive, Help("files per Prefect task")] = 1000,
    max_download_mb: Annotated[Positive, Help("the most a bucket's object may fetch to be described (its parsers "
                                              "read only the blocks they need); past it the object fails")] = 256,
) -> dict[str, Any]:
    """Describe every file under `root`; returns the run's figures."""
    remote = storage.is_url(root)
    root = root if remote else str(storage.local(root))
    if not remote and not os.path.lexists(root):
        raise InputError(f"{root}: no such file or folder")
    check_paths(outputs=(output_path,))
    work_dir = default_work_dir()
    listing = storage.local_dir(work_dir) / "staged" / f"file-metadata-{uuid.uuid4().hex}.jsonl"
    try:
        started, stage = time.monotonic(), stage_objects if remote else stage_tree
        entries = stage(root, listing, tuple(include or ()), tuple(exclude or ()))
        if not entries:
            raise InputError(f"{root}: no files" + (" matching --include/--exclude" if include or exclude else ""))
        walked = round(time.monotonic() - started, 3)
        sandbox = Sandbox("tasks.files.metadata:extract", timeout, memory_mb)
        processes = concurrency or (os.cpu_count() or 2) * (BUCKET_PROCESSES_PER_CPU if remote else 1)
        if runner == "thread":  # the chunks run in this process: their parsers start while the run sets up
            sandbox.prestart(min(processes, entries))
        known = KnownFiles(storage.local_dir(work_dir) / "cache" / "file-metadata.sqlite", VERSION, sandbox.fingerprint, record_fields)
        handler = functools.partial(describe_file, limits=sandbox.fingerprint, flow_host=socket.gethostname(),
                                    download_cap=max_download_mb << 20)
        version = f"{VERSION} cap {max_download_mb}" if remote else VERSION  # a new cap: the capped objects again
        job = Job("file-metadata", handler, RESULT_COLUMNS, (sandbox,), work_dir, version=version,
                  column_types=COLUMN_TYPES, hooks=known,
                  worker_check=functools.partial(prefix_visible if remote else tree_visible, root))
        facts = {"root": f"`{root}`", "per-file limits": f"{timeout:g} s, {memory_mb:,} MB address space",
                 "concurrency": f"{processes} parser processes, at least one per chunk running at once"}
        # a file that fails to parse is that file's state, not a broken API: no brake, no failed share
        if runner == "thread" and workers is None:  # a chunk thread per parser process: more would only add
            workers = processes                     # parsers (and their start-up) on the same cores
        options = RunOptions(chunk_size=chunk_size, runner=runner, workers=workers,
                             total_concurrency=processes * DEPTH, brake_rows=0, max_failed_fraction=None)
        figures = run_job(job, listing, output_path, options, facts=facts)
        figures["phase_seconds"] = {"walk": walked, **figures["phase_seconds"]}
        return figures
    finally:
        listing.unlink(missing_ok=True)
        stop_idle_children()  # those of this process; a Dask worker's end with the worker or when idle
