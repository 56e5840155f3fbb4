"""Book-requests benchmark: prints figures, asserts nothing.

  python bench/book_benchmark.py phones     # 100 000 numbers in mixed formats through check_phones
  python bench/book_benchmark.py geocoding  # 10 000 requests, 30 % repeated addresses, 150 ms, limit 50 QPS
  (duplicates: python bench/dedupe_benchmark.py)

The geocoding part runs the whole flow (dry run) on a local Prefect server; the physical limit is
distinct addresses / 50 per second.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="bench-prefect-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

AREAS = [212, 213, 206, 216, 303, 305, 312, 404, 415, 503, 518, 602, 617, 702, 713, 718, 804, 919]
FORMATS = ["({a}) {b}-{c}", "{a}-{b}-{c}", "+1 {a} {b} {c}", "1{a}{b}{c}", "{a}.{b}.{c}", "+1 ({a}) {b}-{c} ext 12"]


def numbers(count: int, seed: int = 5) -> pd.Series:
    rng = np.random.default_rng(seed)
    area = rng.choice(AREAS, count)
    exchange, line = rng.integers(222, 999, count), rng.integers(0, 9999, count)
    shapes = rng.integers(0, len(FORMATS), count)
    values = [FORMATS[s].format(a=a, b=b, c=f"{c:04d}") for s, a, b, c in zip(shapes, area, exchange, line)]
    bad = rng.random(count) < 0.03  # some junk: letters, too short
    return pd.Series(np.where(bad, "555-CALL-" + pd.Series(line).astype(str), values))


def bench_phones(count: int) -> None:
    from tasks.apis.phones import check_phones

    column = numbers(count)
    started = time.perf_counter()
    checked = check_phones(column, "US")
    seconds = time.perf_counter() - started
    valid = (checked["phone_error"] == "").sum()
    print(f"phones: {count:,} numbers ({column.nunique():,} distinct) in {seconds:.2f} s "
          f"({count / seconds:,.0f}/s); {valid:,} valid, {count - valid:,} with a reason")


def bench_geocoding(count: int, repeat_share: float, qps: int, latency: float) -> None:
    from emulators import Emulator
    from flows.book_requests import book_requests
    from tasks.engine.server import temporary_server
    from tasks.samples.book_requests import history_frame, new_requests_frame

    directory = Path(tempfile.mkdtemp(prefix="bench-books-"))
    history, people = history_frame(1000, seed=3)
    requests = new_requests_frame(count, history, people, dup_share=0, batch_dup_share=0, seed=9)
    distinct = round(count * (1 - repeat_share))
    rng = np.random.default_rng(2)
    addresses = requests["address"].to_numpy(copy=True)
    addresses[distinct:] = addresses[rng.integers(0, distinct, count - distinct)]
    requests["address"] = addresses
    requests["phone"] = numbers(count).to_numpy()
    requests.drop(columns=["entity", "phone_e164"]).to_csv(directory / "requests.csv", index=False)
    history.drop(columns=["entity", "phone_e164"]).to_csv(directory / "history.csv", index=False)
    os.environ.update(GOOGLE_MAPS_API_KEY="bench", BATCHFLOWS_WORK_DIR=str(directory / "work"))
    settings = {"geocoding": {"latency": latency, "rate_limit": qps, "api_key": "bench"}}
    with temporary_server(), Emulator(settings) as emulator:
        figures = book_requests(str(directory / "requests.csv"), str(directory / "history.csv"), str(directory / "out"),
                                geocoding={"base_url": emulator.url, "requests_per_minute": qps * 60},
                                concurrency=100)
        seen = emulator.stats("geocoding")
    geo, seconds = figures["geocoding"], figures["timings"]["addresses"]
    physical = seen["distinct_keys"] / qps
    print(f"geocoding: {count:,} requests, {geo['keys']:,} distinct addresses to check "
          f"(cache hit rate {1 - geo['keys'] / count:.1%} within the batch), {latency * 1000:.0f} ms, limit {qps} QPS")
    print(f"    step {seconds:.1f} s vs physical limit {physical:.1f} s = {physical / seconds:.3f}; emulator: "
          f"{seen['total']:,} requests, {seen['OVER_QUERY_LIMIT']} OVER_QUERY_LIMIT, max in any 1 s {seen['max_1s']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["phones", "geocoding", "all"])
    parser.add_argument("--count", type=int, help="numbers (100 000) or requests (10 000)")
    args = parser.parse_args()
    if args.part in ("phones", "all"):
        bench_phones(args.count or 100_000)
    if args.part in ("geocoding", "all"):
        bench_geocoding(args.count or 10_000, 0.3, 50, 0.15)


if __name__ == "__main__":
    sys.exit(main())
