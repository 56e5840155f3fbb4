"""The file-metadata flow end to end on a real Prefect server: generated, hostile and this machine's files,
every walked entry once in walk order, hang-proofing, resume by (path, size, mtime), Dask processes."""
import base64
import os
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import latest_run_artifacts, run_cli
from flows.file_metadata import file_metadata
from tasks.samples import files as samples
from tasks.samples import handmade
from tasks.engine.tables import InputError

MADE = {"wide.psd": ("psd", lambda p: handmade.write_psd(p, 120, 40)), "pixels.svg": ("svg", lambda p: handmade.write_svg(
    p, "120", "80")), "sans.afm": ("afm", handmade.write_afm), "old.acr": ("acr-nema", lambda p: handmade.write_acr_nema(
    p, 12, 20)), "python": ("elf", lambda p: Path(shutil.copy(os.path.realpath(sys.executable), p)))}


def unreadable_file(path: Path) -> bool:
    """A file this process cannot read. Root reads any file whatever its mode, but not a write-only
    kernel attribute (sysfs refuses reads of files without read bits to everyone)."""
    if os.geteuid() != 0:
        samples.write_png(path).chmod(0)
        return True
    for attribute in sorted(Path("/sys/bus").glob("*/uevent")):
        try:
            open(attribute, "rb").close()
        except PermissionError:
            path.symlink_to(attribute)
            return True
        except OSError:
            continue
    return False


def hostile_tree(root: Path) -> tuple[list[bytes], dict[bytes, tuple[str, str]]]:
    """Real, generated and hostile entries; returns the names in walk order and (status, error) by name."""
    (root / "sub").mkdir(parents=True)
    (root / "skipped").mkdir()
    (root / "made").mkdir()
    expect: dict[bytes, tuple[str, str]] = {}
    for name, (_, write) in MADE.items():  # formats no library here writes, and this machine's Python
        write(root / "made" / name)
        expect[f"made/{name}".encode()] = ("ok", "")
    samples.write_wav(root / "a.wav")
    samples.write_png(root / "b.png")
    samples.write_fits(root / "c.fits")
    samples.write_truncated(root / "cut.png", samples.write_png(root / "skipped" / "whole.png", 40, 30), 0.6)
    (root / "empty.mp4").write_bytes(b"")
    os.mkfifo(root / "fifo")
    samples.write_looping_jpeg(root / "loop.jpg")
    samples.write_wav(root / "new\nline.wav", seconds=0.25)
    samples.write_random(root / "noise.mp4")
    samples.write_png(Path(os.fsdecode(os.fsencode(root) + b"/odd\xff\xfe.png")))
    (root / "self").symlink_to("self")
    (root / "sub" / "broken").symlink_to("nowhere")
    (root / "sub" / "up").symlink_to("..")
    samples.write_pdf(root / "zz.pdf")
    expect.update({
        b"a.wav": ("ok", ""), b"b.png": ("ok", ""), b"c.fits": ("ok", ""),
        b"cut.png": ("ok", "cut file? no IEND chunk at the end"),
        b"empty.mp4": ("unsupported", "empty file (0 bytes)"), b"fifo": ("unsupported", "not a regular file: a named pipe"),
        b"loop.jpg": ("timeout", "no answer within 1 s: the parser was killed"), b"new\nline.wav": ("ok", ""),
        b"noise.mp4": ("unsupported", "unknown format"), b"odd\xff\xfe.png": ("ok", ""),
        b"self": ("failed", "Too many levels of symbolic links"),
        b"sub/broken": ("failed", "No such file or directory (a broken symlink)"),
        b"sub/up": ("unsupported", "a symlink to a directory (not followed)"), b"zz.pdf": ("ok", ""),
    })
    if unreadable_file(root / "unreadable.png"):
        expect[b"unreadable.png"] = ("failed", "Permission denied")
    return sorted(expect), expect


def read_output(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_json(path, lines=True, dtype=False)


def test_every_entry_once_in_walk_order_with_a_status_and_a_reason(workspace):
    root = workspace / "tree"
    order, expect = hostile_tree(root)
    figures = file_metadata(str(root), str(workspace / "out.parquet"), exclude=["skipped"], timeout=1.0,
                            chunk_size=8)
    out = read_output(workspace / "out.parquet")
    names = [base64.b64decode(p)[len(os.fsencode(root)) + 1:] for p in out.path_b64]
    assert names == order  # each entry once, in walk order (name order, depth first), skipped/ left out
    assert {n: (s, e) for n, s, e in zip(names, out.status, out.error)} == expect
    by_name = dict(zip(names, out.to_dict("records")))
    assert by_name[b"odd\xff\xfe.png"]["path"] == f"{root}/odd\\xff\\xfe.png"  # readable, and exact in path_b64
    assert by_name[b"new\nline.wav"]["path"] == f"{root}/new\nline.wav"
    assert (by_name[b"new\nline.wav"]["duration_s"], by_name[b"new\nline.wav"]["sample_rate"]) == (0.25, 8000)
    assert (by_name[b"zz.pdf"]["format"], by_name[b"zz.pdf"]["page_count"]) == ("pdf", 2)
    assert (by_name[b"cut.png"]["width"], by_name[b"c.fits"]["title"]) == (40, "M31")
    assert {name: by_name[f"made/{name}".encode()]["format"] for name in MADE} == {n: f for n, (f, _) in MADE.items()}
    assert by_name[b"loop.jpg"]["elapsed_ms"] >= 990 and by_name[b"a.wav"]["size"] == (root / "a.wav").stat().st_size
    assert figures["statuses"]["timeout"] == 1 and figures["timeouts"] == 1
    summary = latest_run_artifacts()["file-metadata-summary"]
    assert "| unsupported | 4 |" in summary and "| timeout | 1 |" in summary
    assert "peak RSS per worker (its largest child process)" in summary


def mixed_tree(root: Path, files: int = 11) -> None:
    root.mkdir(parents=True, exist_ok=True)
    kinds = sorted(samples.GENERATORS)
    for n in range(files):
        kind = kinds[n % len(kinds)]
        samples.GENERATORS[kind](root / f"f{n:02d}.{kind}")


def test_rerun_parses_only_files_that_changed(workspace):
    root, out = workspace / "tree", workspace / "out.jsonl"
    mixed_tree(root)
    samples.write_looping_jpeg(root / "loop.jpg")
    first = file_metadata(str(root), str(out), timeout=1.0, chunk_size=4)
    before = read_output(out)
    assert first["requests"] == 12 and first["statuses"] == {"ok": 11, "failed": 0, "timeout": 1}

    again = file_metadata(str(root), str(out), timeout=1.0, chunk_size=4)
    assert (again["requests"], again["chunks_done_before"]) == (0, again["chunks"])  # nothing parsed again
    pd.testing.assert_frame_equal(read_output(out), before)

    samples.write_wav(root / "f00.wav", seconds=2.0)  # changed: another size
    samples.write_png(root / "a-new.png", 7, 5)  # new, first in walk order: every chunk's rows shift
    changed = file_metadata(str(root), str(out), timeout=1.0, chunk_size=4)
    after = read_output(out).set_index("path")
    assert changed["requests"] == 2 and changed["chunks_done_before"] == 0  # the others come from the store
    assert after.loc[str(root / "f00.wav"), "duration_s"] == 2.0 and after.loc[str(root / "a-new.png"), "width"] == 7
    assert after.loc[str(root / "loop.jpg"), "status"] == "timeout"

    longer = file_metadata(str(root), str(out), timeout=1.5, chunk_size=4)  # other limits: only the timeout again
    assert longer["requests"] == 1
    assert read_output(out).set_index("path").loc[str(root / "loop.jpg"), "error"] == \
        "no answer within 1.5 s: the parser was killed"


def test_a_runaway_parse_is_stopped_by_the_memory_cap_and_the_batch_goes_on(workspace):
    root = workspace / "tree"
    root.mkdir()
    samples.write_looping_jpeg(root / "a-loop.jpg")
    samples.write_wav(root / "b.wav")
    figures = file_metadata(str(root), str(workspace / "out.jsonl"), timeout=60, memory_mb=160)
    out = read_output(workspace / "out.jsonl")
    assert out.status.tolist() == ["failed", "ok"]
    assert out.error[0] == "memory cap of 160 MB reached" and figures["failure_reasons"] == {"memory cap of N MB reached": 1}


def test_dask_processes_give_the_same_output_as_threads(workspace, monkeypatch):
    root = workspace / "tree"
    mixed_tree(root, files=24)
    samples.write_random(root / "noise.mp4")
    thread = file_metadata(str(root), str(workspace / "thread.jsonl"), chunk_size=7)
    monkeypatch.setenv("BATCHFLOWS_WORK_DIR", str(workspace / "dask-work"))  # no results known from the thread run
    dask = file_metadata(str(root), str(workspace / "dask.jsonl"), chunk_size=7, runner="dask", workers=2)
    assert thread["requests"] == dask["requests"] == 25
    columns = lambda frame: frame.drop(columns=["elapsed_ms"])  # noqa: E731
    pd.testing.assert_frame_equal(columns(read_output(workspace / "dask.jsonl")),
                                  columns(read_output(workspace / "thread.jsonl")))
    workers = {w: mib for w, mib in dask["peak_rss_mb"].items() if int(w.rsplit(":", 1)[1]) != os.getpid()}
    assert workers and all(mib["children"] > 20 for mib in workers.values())  # the parser processes' RSS


def test_cli_with_include_patterns(workspace):
    root = workspace / "tree"
    mixed_tree(root / "sub")
    samples.write_wav(root / "top.WAV")
    result = run_cli("file-metadata", str(root), "-o", str(workspace / "out.csv"), "--include", "*.wav",
                     "--include", "sub/*.png", "--timeout", "5")
    assert result.returncode == 0, result.stderr
    out = pd.read_csv(workspace / "out.csv")
    assert [Path(p).name for p in out.path] == ["f09.png", "f10.wav", "top.WAV"]  # case-insensitive patterns
    assert "3 files parsed in this run" in result.stdout and "3 ok, 0 failed" in result.stdout
    with pytest.raises(InputError, match="no files matching --include/--exclude"):
        file_metadata(str(root), str(workspace / "none.csv"), include=["*.mov"])
