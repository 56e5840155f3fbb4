"""Object-storage benchmark: the same runs on local files and on an S3-compatible server on loopback
(moto's, tests/s3_server.py). Prints figures, asserts nothing.

  python bench/storage_benchmark.py                     # 200 000 users, 10 000 files
  python bench/storage_benchmark.py --rows 20000 --files 1000

cards   card recommendations, users parquet -> CSV, emulator at full speed, each run in its own CLI
        process: local files vs s3://bench/users.parquet -> s3://bench/out/recommendations.csv
        (rows/s end to end incl. start-up, and the peak RSS of the process and its children).
files   file metadata over the oracle corpus copied round robin (bench/metadata_benchmark.py), the
        tree on disk vs the same objects under s3://bench/tree/: files/s while chunks ran, and the
        bytes and ranged reads fetched per object as the rows report them (`bucket_read` in their
        metadata; listing pages not counted).

moto keeps objects in its own process's memory and is slower than a real store, so the bucket
figures are a floor for what the code does, not a measure of S3.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="bench-prefect-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1] / "tests")]

from card_benchmark import KEY, config_file, peak_rss  # noqa: E402
from metadata_benchmark import build_tree  # noqa: E402
from s3_server import S3Server  # noqa: E402

from emulators import Emulator  # noqa: E402
from tasks.engine.server import temporary_server  # noqa: E402
from tasks.samples.tables import write_users  # noqa: E402


def bench_cards(directory: Path, server: S3Server, rows: int) -> None:
    users = write_users(directory / "users.parquet", rows)
    server.client().upload_file(str(users), "bench", "users.parquet")
    with Emulator({"cards": {"api_key": KEY}}) as emulator:
        config = config_file(directory, emulator.url, concurrency=200, rate_limit_per_minute=None, chunk_size=2000)
        for where, source, target in (("local", str(users), str(directory / "recommendations.csv")),
                                      ("bucket", "s3://bench/users.parquet", "s3://bench/out/recommendations.csv")):
            env = {**os.environ, **server.env, "CARD_API_KEY": KEY, "BATCHFLOWS_WORK_DIR": str(directory / f"work-{where}")}
            command = [sys.executable, "-m", "flows.cli", "card-recommendations", source, "-o", target,
                       "--config", str(config)]
            peak, seconds, rc = peak_rss(command, env)
            print(f"cards  {where:6} {rows:,} rows parquet -> CSV: {rows / seconds:,.0f} rows/s end to end "
                  f"({seconds:,.1f} s incl. start-up), peak RSS {peak / 2**20:,.0f} MiB, exit {rc}", flush=True)
            emulator.reset()


def bench_files(directory: Path, server: S3Server, count: int) -> None:
    from flows.file_metadata import file_metadata

    files = build_tree(directory / "corpus", count)
    root = directory / "corpus" / "tree"
    s3 = server.client()
    started = time.monotonic()
    for path in files:
        s3.upload_file(path, "bench", f"tree/{Path(path).relative_to(root)}")
    print(f"files  uploaded {count:,} objects in {time.monotonic() - started:,.0f} s", flush=True)
    total = sum(os.path.getsize(path) for path in files)
    for where, source in (("local", str(root)), ("bucket", "s3://bench/tree")):
        os.environ["BATCHFLOWS_WORK_DIR"] = str(directory / f"work-files-{where}")
        output = directory / f"metadata-{where}.parquet"
        started = time.monotonic()
        figures = file_metadata(source, str(output))
        seconds = time.monotonic() - started
        fetched = f", {fetched_per_object(output, total / count)}" if where == "bucket" else ""
        print(f"files  {where:6} {count:,} files: {figures['processing_rows_per_second']:,.0f} files/s while chunks "
              f"ran, {count / seconds:,.0f} files/s end to end{fetched}; {figures['statuses']}", flush=True)


def fetched_per_object(output: Path, mean_size: float) -> str:
    """The bytes and requests per object the rows' `bucket_read` report, against the objects' mean size."""
    import pandas as pd

    reads = [json.loads(text)["bucket_read"] for text in pd.read_parquet(output, columns=["metadata_json"]).metadata_json]
    fetched = sum(read["bytes"] for read in reads) / len(reads)
    requests = sum(read["requests"] for read in reads) / len(reads)
    return (f"{fetched:,.0f} bytes fetched per object in {requests:.2f} ranged reads "
            f"(objects {mean_size:,.0f} bytes on average)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", nargs="?", choices=["cards", "files", "all"], default="all")
    parser.add_argument("--rows", type=int, default=200_000, help="users for cards")
    parser.add_argument("--files", type=int, default=10_000, help="objects for files")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    with temporary_server() as api_url, S3Server() as server:
        os.environ.update(server.env)
        os.environ["PREFECT_API_URL"] = api_url
        server.bucket("bench")
        if args.part in ("cards", "all"):
            bench_cards(directory, server, args.rows)
        if args.part in ("files", "all"):
            bench_files(directory, server, args.files)


if __name__ == "__main__":
    main()
