"""File-metadata benchmark: prints figures, asserts nothing.

  python bench/metadata_benchmark.py                # 10 000 mixed files
  python bench/metadata_benchmark.py --files 1000   # a quick check

One generated tree (tasks.samples.files.write_mixed_tree: the machine's real media files and generated
ones in 12 formats, copied round robin, a few damaged), then:
  old way  a ThreadPoolExecutor (one thread per core) calling the extractor in this process, as
           MetaExtract did: no timeout can stop a hung parse, and the GIL serialises the parsing;
  thread   the flow with the thread runner (parsing in killable child processes);
  dask     the flow with Dask processes (--workers, default 2).
Each flow run gets a fresh work dir (no results known from an earlier run) and a local Prefect server
(started here, not timed). Prints files/s, ratios, per-file p50/p95 ms (elapsed_ms) and peak RSS per
worker and of its parser processes.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="bench-prefect-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import psutil  # noqa: E402


def old_way(root: Path, threads: int) -> dict:
    from tasks.files.metadata import extract

    files = [os.path.join(folder, name) for folder, _, names in sorted(os.walk(root)) for name in sorted(names)]

    def timed(path: str) -> float:
        started = time.perf_counter()
        extract(path)
        return (time.perf_counter() - started) * 1000

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        elapsed = list(pool.map(timed, files))
    seconds = time.perf_counter() - started
    return {"files": len(files), "seconds": seconds, "elapsed_ms": np.array(elapsed),
            "rss": f"this process {psutil.Process().memory_info().rss / 2**20:,.0f} MiB"}


def flow_run(root: Path, work: Path, runner: str, workers: int | None, chunk_size: int) -> dict:
    from flows.file_metadata import file_metadata

    os.environ["BATCHFLOWS_WORK_DIR"] = str(work)
    output = work / "out.parquet"
    started = time.perf_counter()
    figures = file_metadata(str(root), str(output), runner=runner, workers=workers, chunk_size=chunk_size)
    seconds = time.perf_counter() - started
    out = pd.read_parquet(output, columns=["elapsed_ms", "status"])
    rss = "; ".join(f"{worker}: {mib['worker']:,.0f} MiB, parser processes {mib['children']:,.0f} MiB"
                    for worker, mib in figures["peak_rss_mb"].items())
    return {"files": figures["rows"], "seconds": seconds, "elapsed_ms": out.elapsed_ms.dropna().to_numpy(),
            "rss": rss, "statuses": figures["statuses"], "chunks": figures["chunks"],
            "processing": figures["processing_rows_per_second"]}


def report(name: str, run: dict) -> None:
    p50, p95 = np.percentile(run["elapsed_ms"], [50, 95])
    extra = f", {run['chunks']} chunks, {run['processing']:,.0f} files/s while chunks ran" if "chunks" in run else ""
    print(f"{name:8} {run['files']:,} files in {run['seconds']:.1f} s = {run['files'] / run['seconds']:,.0f} files/s"
          f"{extra}; per file p50 {p50:.2f} ms, p95 {p95:.2f} ms")
    print(f"         peak RSS: {run['rss']}" + (f"; statuses {run['statuses']}" if "statuses" in run else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--dir", help="where to generate the tree (default: a temp dir)")
    args = parser.parse_args()

    from tasks.engine.runners import local_prefect_server
    from tasks.samples.files import write_mixed_tree

    base = Path(args.dir or tempfile.mkdtemp(prefix="bench-metadata-"))
    started = time.perf_counter()
    root = write_mixed_tree(base / "tree", args.files)
    print(f"{args.files:,} files generated under {root} in {time.perf_counter() - started:.1f} s (not timed); "
          f"{os.cpu_count()} cores")
    runs = {"old way": old_way(root, os.cpu_count() or 2)}
    report("old way", runs["old way"])
    with local_prefect_server():
        for name, runner, workers in (("thread", "thread", None), ("dask", "dask", args.workers)):
            runs[name] = flow_run(root, base / f"work-{name}", runner, workers, args.chunk_size)
            report(name, runs[name])
    rate = {name: run["files"] / run["seconds"] for name, run in runs.items()}
    running = {name: run.get("processing", rate[name]) for name, run in runs.items()}
    for title, r in (("end to end", rate), ("while chunks ran", running)):
        print(f"{title}: dask / thread {r['dask'] / r['thread']:.2f}x; dask / old way {r['dask'] / r['old way']:.2f}x; "
              f"thread / old way {r['thread'] / r['old way']:.2f}x")


if __name__ == "__main__":
    main()
