"""Duplicate-detection benchmark: prints figures, asserts nothing.

  python bench/dedupe_benchmark.py                      # 100 000 new x 1 000 000 history, then 1 200 x 100 000
  python bench/dedupe_benchmark.py --new 20000 --history 200000 --small-new 0

Each size runs in a fresh process (so peak RSS is its own). The labelled data are generated first
(not timed); then `find_duplicates` is timed while a thread samples the RSS. Precision and recall are
row-level (tasks.samples.book_requests.evaluate): a flagged row is right when it is a true duplicate and the
request or row it points at is the same person at the same place.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import psutil


def measure(n_new: int, n_history: int, dup_share: float, batch_dup_share: float, seed: int) -> dict:
    from tasks.apis.dedupe import DedupeRun, find_duplicates
    from tasks.samples.book_requests import evaluate, history_frame, new_requests_frame

    process = psutil.Process()
    started = time.monotonic()
    history, people = history_frame(n_history, seed=seed)
    new = new_requests_frame(n_new, history, people, dup_share=dup_share, batch_dup_share=batch_dup_share,
                             seed=seed + 1)
    del people
    generated, before = time.monotonic() - started, process.memory_info().rss
    peak, done = [before], threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak.append(process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    run = DedupeRun()
    started = time.monotonic()
    pairs = find_duplicates(new, history, model_path=model_path, run=run)
    seconds = time.monotonic() - started
    done.set()
    sampler.join()
    figures = evaluate(pairs, new, history)
    return {"new": n_new, "history": n_history, "generate_s": generated, "seconds": seconds,
            "rss_before_mb": before / 2**20, "rss_peak_mb": max(peak) / 2**20, **stats,
            **{k: figures[k] for k in ("expected", "flagged", "correct", "precision", "recall", "pair_precision")}}


def report(f: dict) -> None:
    print(f"\n{f['new']:,} new x {f['history']:,} history (data generated in {f['generate_s']:.1f} s, not timed)")
    print(f"  find_duplicates       {f['seconds']:.1f} s on {os.cpu_count()} cores "
          f"({f['new'] / f['seconds']:,.0f} new rows/s)")
    print(f"  RSS                   {f['rss_before_mb']:,.0f} MB with the frames loaded, peak "
          f"{f['rss_peak_mb']:,.0f} MB during the call (+{f['rss_peak_mb'] - f['rss_before_mb']:,.0f} MB)")
    print(f"  candidate pairs       {f['history_candidates']:,} against history, {f['batch_candidates']:,} "
          f"within the batch; {f['pairs']:,} pairs >= threshold")
    print(f"  duplicate rows        {f['expected']:,} true, {f['flagged']:,} flagged, {f['correct']:,} right")
    print(f"  precision / recall    {f['precision']:.4f} / {f['recall']:.4f} (rows); "
          f"pair precision {f['pair_precision']:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new", type=int, default=100_000)
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--small-new", type=int, default=1_200, help="0 skips the small batch")
    parser.add_argument("--small-history", type=int, default=100_000)
    parser.add_argument("--dup-share", type=float, default=0.2, help="share of new rows re-asking a history entity")
    parser.add_argument("--batch-dup-share", type=float, default=0.05, help="share repeating an earlier batch row")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = [(args.new, args.history)] + ([(args.small_new, args.small_history)] if args.small_new else [])
    for n_new, n_history in sizes:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            report(pool.submit(measure, n_new, n_history, args.dup_share, args.batch_dup_share, args.seed).result())


if __name__ == "__main__":
    main()
