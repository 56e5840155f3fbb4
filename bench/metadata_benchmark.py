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
  dask       the flow on Dask worker processes (--workers), a local cluster started and stopped by the run;
  cli        `python -m flows.cli file-metadata TREE` in a child process on the same server: the thread
             runner plus the process's start and imports, what a user waits for.
The flows run as the CLI runs them (tasks.engine.server.prefect_backend: no heartbeat thread to join),
after one untimed run on the 20-file tree in a child process: a fresh server's first flow run costs
~1 s more than any later one (the shared server of the CLI is warm after its first run; that first
run is in the fixed costs below). Each flow line is followed by where its time went: the walk, the
engine's phases (tasks/engine/run.py: staging, runner start (a Dask cluster's start), chunks, runner
stop, output, summary) and Prefect's own flow-run bookkeeping around them.
Then the fixed cost of one CLI run (`python -m flows.cli file-metadata` on a 20-file tree; --fixed-cost
for this part alone): with Prefect's temporary server (what the CLI did before), the shared server
the CLI starts once per PREFECT_HOME (first run, later runs, no-op reruns), a server for the run only,
and a server already running (PREFECT_API_URL). See tasks/engine/server.py.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="bench-prefect-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # the cluster's start and stop, line by line
SMALL_TREE = 20  # files of the tree the fixed cost of a CLI run is measured on


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
    """One flow call; its figures, then where its time went (phase seconds)."""
    from flows.file_metadata import file_metadata

    os.environ["BATCHFLOWS_WORK_DIR"] = str(work)
    started = time.perf_counter()
    figures = file_metadata(str(root), str(work / "out.parquet"), runner=runner, workers=workers)
    phases = figures["phase_seconds"]
    engine = time.perf_counter() - started - sum(phases.values())
    return (f"({figures['processing_rows_per_second']:,.0f} files/s while chunks ran; {figures['statuses']})\n"
            f"{'':10} phases: " + ", ".join(f"{name} {seconds:.2f}" for name, seconds in phases.items())
            + f", Prefect's flow run around them {engine:.2f} s")


def cli_run(root: Path, work: Path) -> str:
    cli_seconds(root, work, {}, ["-m", "flows.cli", "file-metadata", str(root), "-o", str(work / "out.parquet")])
    return "(a child process: its start and imports, then the run)"


def warm_server(small: Path, work: Path) -> None:
    """The untimed first flow run of a fresh server, in a child process (this one stays cold)."""
    seconds = cli_seconds(small, work, {}, ["-c", "from flows.file_metadata import file_metadata; "
                                                  f"file_metadata({str(small)!r}, {str(work / 'out.csv')!r})"])
    print(f"{'warm-up':10} the server's first flow run ({SMALL_TREE} files, a child process): {seconds:.1f} s (not counted)",
          flush=True)


def cli_seconds(root: Path, work: Path, env: dict[str, str], command: list[str] | None = None) -> float:
    """Wall seconds of one `batchflows file-metadata ROOT` (or `command`) in a child process."""
    started = time.perf_counter()
    command = command or ["-m", "flows.cli", "file-metadata", str(root), "-o", str(work / "out.csv")]
    done = subprocess.run([sys.executable, *command], env={**os.environ, "BATCHFLOWS_WORK_DIR": str(work), **env},
                          capture_output=True, text=True)
    if done.returncode:
        print(done.stderr[-2000:])
    return time.perf_counter() - started


def fixed_costs(base: Path, tree: Path, repeat: int) -> None:
    """The fixed cost of a CLI run on a small tree: with Prefect's temporary server (what the CLI did
    before it shared one), the shared server (first run: started; later runs: found), a server for
    the run only, and a server already running (PREFECT_API_URL)."""
    from tasks.engine.server import temporary_server

    files = sum(1 for path in tree.rglob("*") if path.is_file())
    os.environ.pop("PREFECT_API_URL", None)

    def report(name: str, seconds: list[float]) -> None:
        print(f"{name:58} " + ", ".join(f"{s:.1f}" for s in seconds) + f" s (median {statistics.median(seconds):.1f})",
              flush=True)

    report("import the CLI and the flow (python -c 'import ...')", [cli_seconds(tree, base, {}, [
        "-c", "import flows.cli, flows.file_metadata"]) for _ in range(repeat)])
    ephemeral = ["-c", "from flows.file_metadata import file_metadata; "
                       f"file_metadata({str(tree)!r}, {str(base / 'ephemeral.csv')!r})"]
    report("Prefect's temporary server (the CLI before; fresh HOME)", [cli_seconds(tree, base / f"eph-{n}", {
        "PREFECT_HOME": tempfile.mkdtemp(prefix="ph-")}, ephemeral) for n in range(repeat)])
    home = {"PREFECT_HOME": str(base / "shared-home")}
    report(f"CLI, shared server: first run (starts it), {files} files", [cli_seconds(tree, base / "cli-0", home)])
    report(f"CLI, shared server: later runs, {files} files parsed", [
        cli_seconds(tree, base / f"cli-{n + 1}", home) for n in range(repeat)])
    report("CLI, shared server: later runs, no-op (files known)", [
        cli_seconds(tree, base / "cli-0", home) for _ in range(repeat)])
    subprocess.run([sys.executable, "-m", "flows.cli", "server", "stop"], env={**os.environ, **home}, check=True,
                   capture_output=True)
    report("CLI, a server for the run only (..._IDLE_MINUTES=0)", [cli_seconds(tree, base / f"own-{n}", {
        "PREFECT_HOME": str(base / "own-home"), "BATCHFLOWS_SERVER_IDLE_MINUTES": "0"}) for n in range(repeat)])
    with temporary_server() as url:
        report("CLI, a server already running (PREFECT_API_URL)", [
            cli_seconds(tree, base / f"api-{n}", {"PREFECT_API_URL": url}) for n in range(repeat)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    parser.add_argument("--dir", help="where to generate the tree (default: a temp dir)")
    parser.add_argument("--skip-flow", action="store_true", help="only exiftool, hachoir and the extractor")
    parser.add_argument("--fixed-cost", action="store_true", help="only the fixed cost of a CLI run")
    parser.add_argument("--skip-fixed-cost", action="store_true", help="the throughput figures only")
    parser.add_argument("--repeat", type=int, default=3, help="runs per fixed-cost figure")
    args = parser.parse_args()

    base = Path(args.dir or tempfile.mkdtemp(prefix="bench-metadata-"))
    started = time.perf_counter()
    files = build_tree(base, SMALL_TREE if args.fixed_cost else args.files)
    print(f"{len(files):,} files under {base / 'tree'} in {time.perf_counter() - started:.1f} s (not timed); "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    if args.fixed_cost:
        fixed_costs(base, base / "tree", args.repeat)
        return
    rates = {"exiftool": timed("exiftool", len(files), lambda: exiftool(base / "tree")),
             "hachoir": timed("hachoir", len(files), lambda: hachoir_loop(files)),
             "extract 1": timed("extract 1", len(files), lambda: extract_loop(files)),
             "extract N": timed("extract N", len(files), lambda: extract_processes(files, args.processes))}
    if not args.skip_flow:
        import flows.file_metadata  # noqa: F401 (imported before the clock starts: the cli line counts imports)
        from tasks.engine.server import prefect_backend, temporary_server

        small = base / "small"
        small.mkdir(exist_ok=True)
        for path in files[:SMALL_TREE]:
            shutil.copyfile(path, small / Path(path).name)
        with temporary_server(), prefect_backend():
            warm_server(small, base / "w-warm")
            rates["thread"] = timed("thread", len(files), lambda: flow_run(base / "tree", base / "w-thread", "thread", None))
            rates["dask"] = timed("dask", len(files), lambda: flow_run(base / "tree", base / "w-dask", "dask", args.workers))
            rates["cli"] = timed("cli", len(files), lambda: cli_run(base / "tree", base / "w-cli"))
    print("vs exiftool: " + ", ".join(f"{name} {rate / rates['exiftool']:.2f}x" for name, rate in rates.items()))
    if not args.skip_flow and not args.skip_fixed_cost:
        fixed_costs(base, small, args.repeat)


if __name__ == "__main__":
    main()
