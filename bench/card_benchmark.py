"""Card-recommendations benchmark: prints figures, asserts nothing.

  python bench/card_benchmark.py rate     # (a) 10 000 rows, 100 ms latency, limit 100 req/s: ratio to the limit
  python bench/card_benchmark.py oldway   # (b) 2 000 rows, 1 s latency, no limit: flow vs ThreadPoolExecutor(20)
  python bench/card_benchmark.py memory   # (c) peak RSS at 200 K and 2 M rows, emulator at full speed
  python bench/card_benchmark.py emulator # what the emulator sustains (so it is not the bottleneck)
  python bench/card_benchmark.py kill     # SIGKILL mid-run, rerun: requests repeated for rows already done

`--runner isolated` runs (a) and (c) on a Dask cluster of 2 workers that share nothing with the flow
but the network (tests/isolated_cluster.py: own mounts and hostname; needs root).

Prefect runs against a local `prefect server start` (started here), so server start-up is not timed.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="bench-prefect-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import httpx  # noqa: E402
import psutil  # noqa: E402

from emulators import Emulator  # noqa: E402
from tasks.engine.server import temporary_server  # noqa: E402
from tasks.samples.tables import write_users  # noqa: E402

KEY = "bench-key"


def config_file(directory: Path, url: str, **processing) -> Path:
    path = directory / "config.json"
    path.write_text(json.dumps({"api": {"base_url": url, "api_key_env": "CARD_API_KEY", "timeout": 30},
                                "processing": processing}))
    return path


def run_flow(directory: Path, users: Path, url: str, runner: str = "thread", **processing) -> tuple[float, dict]:
    from flows.card_recommendations import card_recommendations

    os.environ["BATCHFLOWS_WORK_DIR"] = str(directory / f"work-{time.monotonic_ns()}")
    started = time.monotonic()
    figures = card_recommendations(str(users), str(directory / "out.parquet"),
                                   str(config_file(directory, url, **processing)), runner=runner)
    return time.monotonic() - started, figures


def bench_rate(directory: Path, rows: int, runner: str) -> None:
    users = write_users(directory / "users.csv", rows)
    with Emulator({"cards": {"latency": 0.1, "rate_limit": 100, "api_key": KEY}}) as emulator:
        wall, figures = run_flow(directory, users, emulator.url, runner=runner, concurrency=50,
                                 rate_limit_per_minute=6000, chunk_size=200)
        seen = emulator.stats("cards")
    print(f"(a) {rows:,} rows, latency 100 ms, limit 100 req/s, runner {runner}")
    print(f"    wall {wall:.1f} s -> {rows / wall:.1f} rows/s = {rows / wall / 100:.3f} of the limit "
          f"(processing only: {figures['processing_rows_per_second']} rows/s = "
          f"{figures['processing_rows_per_second'] / 100:.3f})")
    print(f"    emulator: {seen['total']:,} requests, statuses {seen['statuses']}, max in any 1 s: {seen['max_1s']}")


def old_way(users: Path, url: str, workers: int = 20) -> float:
    """What the old runner did: a thread pool, one synchronous HTTP call per user."""
    import pandas as pd

    rows = pd.read_csv(users).to_dict("records")
    client = httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=30,
                          limits=httpx.Limits(max_connections=workers))
    started = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda row: client.post("/v1/recommendations", json=row).raise_for_status(), rows))
    client.close()
    return time.monotonic() - started


def bench_oldway(directory: Path, rows: int, concurrency: int) -> None:
    users = write_users(directory / "users.csv", rows)
    with Emulator({"cards": {"latency": 1.0, "api_key": KEY}}) as emulator:
        old = old_way(users, emulator.url)
        emulator.reset()
        wall, figures = run_flow(directory, users, emulator.url, concurrency=concurrency,
                                 rate_limit_per_minute=None, chunk_size=200)
        seen = emulator.stats("cards")
    print(f"(b) {rows:,} rows, latency 1 s, no rate limit")
    print(f"    old way ThreadPoolExecutor(20) + sync httpx: {old:.1f} s ({rows / old:.1f} rows/s)")
    print(f"    flow, concurrency {concurrency}: {wall:.1f} s ({rows / wall:.1f} rows/s), ok {figures['ok']:,}; "
          f"speed-up {old / wall:.1f}x (max in flight at the emulator: {seen['max_in_flight']})")


def peak_rss(command: list[str], env: dict) -> tuple[int, float, int]:
    """Run command; sample the RSS of it and its children every 0.2 s. Returns (peak bytes, seconds, rc)."""
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    parent, peak = psutil.Process(process.pid), 0
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(process.stderr), daemon=True)
    reader.start()
    while process.poll() is None:
        try:
            total = parent.memory_info().rss + sum(c.memory_info().rss for c in parent.children(recursive=True))
            peak = max(peak, total)
        except psutil.Error:
            pass
        time.sleep(0.2)
    reader.join(5)
    if process.returncode:
        print("".join(stderr[-20:]), file=sys.stderr)
    return peak, time.monotonic() - started, process.returncode


def bench_memory(directory: Path, sizes: list[int], runner: str) -> None:
    with Emulator({"cards": {"api_key": KEY}}) as emulator:
        for rows in sizes:
            users = write_users(directory / f"users-{rows}.csv", rows)
            config = config_file(directory, emulator.url, concurrency=200, rate_limit_per_minute=None, chunk_size=200)
            env = {**os.environ, "CARD_API_KEY": KEY, "BATCHFLOWS_WORK_DIR": str(directory / f"work-{rows}")}
            command = [sys.executable, "-m", "flows.cli", "card-recommendations", str(users),
                       "-o", str(directory / f"out-{rows}.parquet"), "--config", str(config), "--runner", runner]
            peak, seconds, rc = peak_rss(command, env)
            print(f"(c) {rows:>9,} rows, runner {runner}: flow process peak RSS {peak / 2**20:,.0f} MiB, {seconds:,.0f} s "
                  f"({rows / seconds:,.0f} rows/s end to end, incl. start-up), exit {rc}", flush=True)
            emulator.reset()


def bench_kill(directory: Path, rows: int = 20_000) -> None:
    """Kill the CLI with SIGKILL halfway, rerun it, count 2xx answers the API gave twice for one user."""
    users = write_users(directory / "users-kill.csv", rows)
    with Emulator({"cards": {"latency": 0.05, "api_key": KEY}}) as emulator:
        config = config_file(directory, emulator.url, concurrency=100, rate_limit_per_minute=None, chunk_size=500)
        env = {**os.environ, "CARD_API_KEY": KEY, "BATCHFLOWS_WORK_DIR": str(directory / "work-kill")}
        command = [sys.executable, "-m", "flows.cli", "card-recommendations", str(users),
                   "-o", str(directory / "out-kill.csv"), "--config", str(config)]
        victim = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        while emulator.stats("cards")["ok_keys"] < rows // 2 and victim.poll() is None:
            time.sleep(0.05)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        done = emulator.stats("cards")["ok_keys"]
        started = time.monotonic()
        rerun = subprocess.run(command, env=env, capture_output=True, text=True)
        seen = emulator.stats("cards")
    print(f"kill: {rows:,} rows, concurrency 100, chunks of 500: killed after {done:,} answered; rerun exit "
          f"{rerun.returncode} in {time.monotonic() - started:.1f} s; users answered twice: "
          f"{len(seen['ok_repeated_keys']):,}; distinct users answered {seen['ok_keys']:,}")


def bench_emulator(seconds: float = 10.0, connections: int = 100) -> None:
    """Requests/s the emulator answers with zero latency, driven by a client in another process."""
    with Emulator({"cards": {"api_key": KEY}}) as emulator:
        code = f"""
import asyncio, time, aiohttp
async def main():
    end, n = time.monotonic() + {seconds}, 0
    async with aiohttp.ClientSession(headers={{"X-API-Key": "{KEY}"}}) as s:
        async def worker():
            nonlocal n
            while time.monotonic() < end:
                async with s.post("{emulator.url}/v1/recommendations", json={{"user_id": "u", "monthly_spend": 5}}) as r:
                    await r.read(); n += 1
        await asyncio.gather(*(worker() for _ in range({connections})))
    print(n / {seconds})
asyncio.run(main())
"""
        rate = float(subprocess.check_output([sys.executable, "-c", code], text=True))
    print(f"emulator: {rate:,.0f} requests/s sustained ({connections} connections, zero latency, 2 cores shared)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["rate", "oldway", "memory", "emulator", "kill", "all"])
    parser.add_argument("--rows", type=int, help="rows for rate (10 000) or oldway (2 000)")
    parser.add_argument("--runner", default="thread", help="thread, dask, tcp://host:port or isolated")
    parser.add_argument("--concurrency", type=int, default=500, help="flow concurrency for oldway")
    parser.add_argument("--sizes", default="200000,2000000", help="row counts for memory")
    args = parser.parse_args()
    os.environ["CARD_API_KEY"] = KEY
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the emulator and server on kill
    directory = Path(tempfile.mkdtemp(prefix="bench-cards-"))
    with temporary_server() as api_url, contextlib.ExitStack() as stack:
        runner = args.runner
        if runner == "isolated":
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from isolated_cluster import IsolatedCluster

            logs, shared = directory / "cluster-logs", directory / "cluster-shared"
            logs.mkdir(), shared.mkdir()
            cluster = stack.enter_context(IsolatedCluster.start(api_url, directory, logs, shared))
            runner = cluster.address
        if args.part in ("emulator", "all"):
            bench_emulator()
        if args.part in ("rate", "all"):
            bench_rate(directory, args.rows or 10_000, runner)
        if args.part in ("oldway", "all"):
            bench_oldway(directory, args.rows or 2_000, args.concurrency)
        if args.part in ("kill", "all"):
            bench_kill(directory)
        if args.part in ("memory", "all"):
            bench_memory(directory, [int(n) for n in args.sizes.split(",")], runner)


if __name__ == "__main__":
    main()
