"""Prescription-extraction benchmark: prints figures, asserts nothing.

  python bench/prescription_benchmark.py [--files 2000] [--batch-seconds 60] [--skip-realtime]

A Drive folder of generated prescription PDFs (emulated Drive, 200 ms a request, 100 requests/min as
the old extractor's limit) and emulated Claude (4 s a request, 50 requests/min over a 60 s window).
Realtime: the physical limit is files / (50 per minute) + one download and one Claude latency; the
figure is files/min against the 50/min limit. Batch: the same files through Message Batches (a batch
ends `--batch-seconds` after its creation; downloads at Drive's 1 000 requests/min, a real project
quota is 12 000) and the $ of both modes from the same price table. Prefect runs against a local server.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="bench-prefect-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from emulators import Emulator  # noqa: E402
from emulators.drive import drive_id  # noqa: E402
from emulators.prescriptions import write_prescription_pdf  # noqa: E402
from tasks.engine.server import temporary_server  # noqa: E402

KEY = "bench-anthropic-key"
LIMIT_PER_MINUTE, CLAUDE_LATENCY, DRIVE_LATENCY = 50, 4.0, 0.2


def run(folder: str, url: str, work: Path, mode: str, drive_per_minute: float) -> tuple[float, dict]:
    from flows.prescription_extraction import prescription_extraction

    os.environ["BATCHFLOWS_WORK_DIR"] = str(work)
    started = time.monotonic()
    figures = prescription_extraction(folder, str(work / f"{mode}.jsonl"), mode=mode,
                                      drive={"base_url": f"{url}/drive/v3", "requests_per_minute": drive_per_minute},
                                      anthropic={"base_url": url, "requests_per_minute": LIMIT_PER_MINUTE},
                                      poll_seconds=5)
    return time.monotonic() - started, figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--batch-seconds", type=float, default=60.0)
    parser.add_argument("--skip-realtime", action="store_true", help="batch mode only")
    args = parser.parse_args()
    os.environ["ANTHROPIC_API_KEY"] = KEY
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    directory = Path(tempfile.mkdtemp(prefix="bench-rx-"))
    root = directory / "folder"
    root.mkdir()
    for n in range(args.files):
        write_prescription_pdf(root / f"rx{n:05d}.pdf", n)
    folder = drive_id(str(root))
    settings = {"drive": {"latency": DRIVE_LATENCY, "drive_root": str(root)},
                "anthropic": {"latency": CLAUDE_LATENCY, "rate_limit": LIMIT_PER_MINUTE, "rate_window": 60,
                              "api_key": KEY, "batch_seconds": args.batch_seconds}}
    physical = args.files / LIMIT_PER_MINUTE * 60 + CLAUDE_LATENCY + DRIVE_LATENCY
    print(f"{args.files:,} PDFs; Drive {DRIVE_LATENCY} s; Claude {CLAUDE_LATENCY} s, limit {LIMIT_PER_MINUTE}/min; "
          f"physical limit {physical:.0f} s = {LIMIT_PER_MINUTE} files/min", flush=True)
    costs = {}
    with temporary_server(), Emulator(settings) as emulator:
        if not args.skip_realtime:
            wall, figures = run(folder, emulator.url, directory / "realtime", "realtime", 100)
            claude = emulator.stats("anthropic")
            per_minute = args.files / wall * 60
            costs["realtime"] = figures["cost_usd"]
            print(f"realtime: {wall:.0f} s wall, {per_minute:.2f} files/min = {per_minute / LIMIT_PER_MINUTE:.3f} "
                  f"of the limit ({physical / wall:.3f} of the physical limit); {figures['ok']:,} success, "
                  f"{figures['partial']:,} partial, {figures['failed']:,} failed; Claude {claude['total']:,} "
                  f"requests, statuses {claude['statuses']}, max in any 60 s {claude['max_60s']}; "
                  f"Drive max in any 60 s {emulator.stats('drive')['max_60s']}; ${figures['cost_usd']:.4f}", flush=True)
            emulator.reset()
        wall, figures = run(folder, emulator.url, directory / "batch", "batch", 1000)
        claude = emulator.stats("anthropic")
        costs["batch"] = figures["cost_usd"]
        print(f"batch:    {wall:.0f} s wall ({args.batch_seconds:.0f} s a batch); {figures['ok']:,} success, "
              f"{figures['partial']:,} partial, {figures['failed']:,} failed; {claude['batches_created']} batches, "
              f"{claude['total']:,} API requests; ${figures['cost_usd']:.4f}", flush=True)
    if len(costs) == 2:
        print(f"cost: realtime ${costs['realtime']:.4f}, batch ${costs['batch']:.4f} "
              f"({costs['batch'] / costs['realtime']:.2f} of realtime); per file ${costs['realtime'] / args.files:.5f} "
              f"vs ${costs['batch'] / args.files:.5f}")


if __name__ == "__main__":
    main()
