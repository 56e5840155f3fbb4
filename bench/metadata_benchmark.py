"""File-metadata benchmark: prints figures, asserts nothing.

  python bench/metadata_benchmark.py                # 5 000 files
  python bench/metadata_benchmark.py --files 1000   # a quick check

One tree: the oracle corpus (tasks/samples/corpus.py: media ffmpeg makes in many containers, images,
hand-made headers, this machine's own files, cut copies) copied round robin. On that tree, side by side:
  exiftool   `exiftool -fast -ext '*' -r -json` (one process), output discarded;
  hachoir    createParser + extractMetadata in one process (what `hachoir-metadata` does per file);
  extract 1  tasks.files.metadata.extract in one process;
  extract N  the same in N processes (multiprocessing, --processes, default the core count);
  thread     the flow, thread runner (killable parser processes), on a Prefect server started here;
  dask       the flow on Dask worker processes (--workers).
Then the fixed cost of one CLI run (`python -m flows.cli file-metadata` on a one-file tree): with
Prefect's temporary server (what a user gets), against a server already running (PREFECT_API_URL),
and with a persistent PREFECT_HOME (its database kept between runs).
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="bench-prefect-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def build_tree(base: Path, count: int) -> list[str]:
    from tasks.samples.corpus import build_corpus

    sources = build_corpus(base / "templates")
    files = []
    for n in range(count):
        source = sources[n % len(sources)]
        target = base / "tree" / f"d{n // 200:04d}" / f"{n:07d}-{source.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        files.append(str(target))
    return files


def timed(name: str, count: int, run) -> float:
    started = time.perf_counter()
    extra = run() or ""
    seconds = time.perf_counter() - started
    print(f"{name:10} {count:,} files in {seconds:6.1f} s = {count / seconds:7,.0f} files/s {extra}", flush=True)
    return count / seconds


def exiftool(root: Path) -> None:
    subprocess.run(["exiftool", "-fast", "-ext", "*", "-r", "-json", "-q", "-q", str(root)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def hachoir_loop(files: list[str]) -> str:
    from hachoir.core import config
    from hachoir.metadata import extractMetadata
    from hachoir.parser import createParser

    config.quiet = True  # as `hachoir-metadata --quiet`
    read = 0
    for path in files:
        try:
            parser = createParser(path)
            if parser:
                with parser:
                    read += extractMetadata(parser) is not None
        except Exception:  # what hachoir-metadata prints and passes over
            pass
    return f"({read:,} with metadata)"


def extract_loop(files: list[str]) -> str:
    from tasks.files.metadata import extract

    statuses: dict[str, int] = {}
    for path in files:
        status = extract(path)["status"]
        statuses[status] = statuses.get(status, 0) + 1
    return str(statuses)


def _extract_status(path: str) -> str:
    from tasks.files.metadata import extract

    return extract(path)["status"]


def extract_processes(files: list[str], processes: int) -> str:
    with multiprocessing.get_context("forkserver").Pool(processes) as pool:
        statuses = pool.map(_extract_status, files, chunksize=64)
    return f"({processes} processes, {statuses.count('ok'):,} ok)"


def flow_run(root: Path, work: Path, runner: str, workers: int | None) -> str:
    from flows.file_metadata import file_metadata

    os.environ["BATCHFLOWS_WORK_DIR"] = str(work)
    figures = file_metadata(str(root), str(work / "out.parquet"), runner=runner, workers=workers)
    return f"({figures['processing_rows_per_second']:,.0f} files/s while chunks ran; {figures['statuses']})"


def cli_seconds(root: Path, work: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "flows.cli", "file-metadata", str(root), "-o", str(work / "one.csv")],
                          env={**os.environ, "BATCHFLOWS_WORK_DIR": str(work), **env}, capture_output=True, text=True)
    if done.returncode:
        print(done.stderr[-2000:])
    return time.perf_counter() - started


def fixed_costs(base: Path) -> None:
    from tasks.engine.runners import local_prefect_server

    one = base / "one"
    one.mkdir(exist_ok=True)
    (one / "a.txt").write_text("one file\n")
    plain = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    runs = {"temporary server, fresh PREFECT_HOME": lambda n: dict(PREFECT_HOME=tempfile.mkdtemp(prefix="ph-")),
            "temporary server, kept PREFECT_HOME": lambda n: dict(PREFECT_HOME=str(base / "kept-home"))}
    started = time.perf_counter()
    import_only = subprocess.run([sys.executable, "-c", "import flows.cli, prefect"], env=plain)
    print(f"importing the CLI and Prefect: {time.perf_counter() - started:.1f} s (exit {import_only.returncode})")
    os.environ.pop("PREFECT_API_URL", None)
    for name, env in runs.items():
        seconds = [cli_seconds(one, base / f"cli-{n}", {**env(n), "PREFECT_API_URL": ""}) for n in range(3)]
        print(f"CLI run, {name}: " + ", ".join(f"{s:.1f}" for s in seconds) + " s")
    with local_prefect_server() as url:
        seconds = [cli_seconds(one, base / f"cli-server-{n}", {"PREFECT_API_URL": url}) for n in range(3)]
    print("CLI run, server already running (PREFECT_API_URL): " + ", ".join(f"{s:.1f}" for s in seconds) + " s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    parser.add_argument("--dir", help="where to generate the tree (default: a temp dir)")
    parser.add_argument("--skip-flow", action="store_true", help="only exiftool, hachoir and the extractor")
    args = parser.parse_args()

    base = Path(args.dir or tempfile.mkdtemp(prefix="bench-metadata-"))
    started = time.perf_counter()
    files = build_tree(base, args.files)
    print(f"{len(files):,} files under {base / 'tree'} in {time.perf_counter() - started:.1f} s (not timed); "
          f"{os.cpu_count()} cores")
    rates = {"exiftool": timed("exiftool", len(files), lambda: exiftool(base / "tree")),
             "hachoir": timed("hachoir", len(files), lambda: hachoir_loop(files)),
             "extract 1": timed("extract 1", len(files), lambda: extract_loop(files)),
             "extract N": timed("extract N", len(files), lambda: extract_processes(files, args.processes))}
    if not args.skip_flow:
        from tasks.engine.runners import local_prefect_server

        with local_prefect_server():
            rates["thread"] = timed("thread", len(files), lambda: flow_run(base / "tree", base / "w-thread", "thread", None))
            rates["dask"] = timed("dask", len(files), lambda: flow_run(base / "tree", base / "w-dask", "dask", args.workers))
    print("vs exiftool: " + ", ".join(f"{name} {rate / rates['exiftool']:.2f}x" for name, rate in rates.items()))
    if not args.skip_flow:
        fixed_costs(base)


if __name__ == "__main__":
    main()
