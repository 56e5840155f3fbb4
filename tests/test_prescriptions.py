"""The prescription-extraction flow against the Drive and Anthropic emulators, through the real
google-api-python-client and anthropic SDK: order, statuses, hostile files, faults, limits, kill and
rerun (realtime and batch), failed-files export, no keys or patient data in logs."""
import json
import sys
import time
import tracemalloc

import anthropic
import pytest

from conftest import kill_when, latest_run_artifacts, run_cli, server_texts
from emulators.prescriptions import write_corrupt_pdf, write_image_only_pdf, write_large_pdf, write_prescription_pdf
from flows.prescription_extraction import prescription_extraction
from test_drive_client import run as drive_run
from test_drive_emulator import HOSTILE, add

KEY = "sk-ant-rx-Vb83Hq"
FOLDER = "application/vnd.google-apps.folder"


@pytest.fixture
def apis(emulator, workspace, monkeypatch):
    emulator.configure("anthropic", api_key=KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    return emulator


def make_folder(emulator, tmp_path, count: int, extra: tuple = (), names=None) -> tuple[str, list[dict]]:
    """A Drive folder with `count` real prescriptions (named in listing order) plus `extra` files;
    returns its id and the prescriptions' ground truth."""
    folder = add(emulator.url, {"name": "rx", "mimeType": FOLDER})[0]["id"]
    (tmp_path / "pdfs").mkdir(exist_ok=True)
    truths, files = [], []
    for n in range(count):
        path = tmp_path / "pdfs" / f"{n}.pdf"
        truths.append(write_prescription_pdf(path, n))
        files.append({"name": names[n] if names else f"a{n:04d}.pdf", "path": str(path), "parents": [folder]})
    add(emulator.url, *files, *({**file, "parents": [folder]} for file in extra))
    return folder, truths


def options(emulator, claude_per_minute=6000, drive_per_minute=6000, **more) -> dict:
    return {"drive": {"base_url": f"{emulator.url}/drive/v3", "requests_per_minute": drive_per_minute},
            "anthropic": {"base_url": emulator.url, "requests_per_minute": claude_per_minute}, "poll_seconds": 0.3,
            **more}


def cli_options(emulator, *more: str) -> list[str]:
    return ["--drive-base-url", f"{emulator.url}/drive/v3", "--anthropic-base-url", emulator.url,
            "--anthropic-requests-per-minute", "6000", "--drive-requests-per-minute", "6000", "--poll-seconds", "0.3",
            *more]


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def batch_holding(emulator) -> dict[str, list[str]]:
    """custom_id -> every batch the emulator holds it in (listed, then read once ended)."""
    client = anthropic.Anthropic(api_key=KEY, base_url=emulator.url, max_retries=0)
    holding: dict[str, list[str]] = {}
    for batch in client.messages.batches.list(limit=100):
        while client.messages.batches.retrieve(batch.id).processing_status != "ended":
            time.sleep(0.1)
        for line in client.messages.batches.results(batch.id):
            holding.setdefault(line.custom_id, []).append(batch.id)
    return holding


def test_files_come_out_in_listing_order_with_fields_usage_and_cost(apis, tmp_path):
    folder, truths = make_folder(apis, tmp_path, 6, names=sorted(HOSTILE[:3] + ["b.pdf", "c.pdf", "d.pdf"]))
    figures = prescription_extraction(folder, str(tmp_path / "out.jsonl"), **options(apis))
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert [r["name"] for r in rows] == sorted(HOSTILE[:3] + ["b.pdf", "c.pdf", "d.pdf"])
    assert [r["status"] for r in rows] == ["success"] * 6 and all(r["error"] == "" for r in rows)
    for row, truth in zip(rows, truths):
        assert row["fields"]["patient_name"] == truth["patient_name"] and row["fields"]["date"] == truth["date"]
        assert [m["drug"] for m in row["fields"]["medications"]] == [m["drug"] for m in truth["medications"]]
        assert row["input_tokens"] > 1500 and row["output_tokens"] > 0 and row["cost_usd"] > 0
    assert figures["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in rows))
    downloads = tmp_path / "work" / "prescriptions"
    assert not [p for p in downloads.rglob("*") if p.is_file() and p.suffix == ".pdf"]  # deleted once done
    summary = latest_run_artifacts()["prescription-extraction-summary"]
    assert "| files listed | 6 |" in summary and "cost of these rows" in summary


def test_bad_files_fail_alone_with_clear_reasons_and_are_exported_to_run_again(apis, tmp_path):
    write_corrupt_pdf(tmp_path / "broken.pdf")
    write_image_only_pdf(tmp_path / "scan.pdf", 3)
    write_large_pdf(tmp_path / "huge.pdf", megabytes=50)
    extra = ({"name": "m-broken.pdf", "path": str(tmp_path / "broken.pdf")}, {"name": "m-empty.pdf", "content": ""},
             {"name": "m-huge.pdf", "path": str(tmp_path / "huge.pdf")},
             {"name": "m-photo.pdf", "content": "GIF89a, not a pdf"},
             {"name": "m-scan.pdf", "path": str(tmp_path / "scan.pdf")})
    folder, _ = make_folder(apis, tmp_path, 3, extra)
    out = tmp_path / "out.jsonl"
    prescription_extraction(folder, str(out), **options(apis))
    rows = {r["name"]: r for r in read_jsonl(out)}
    assert [r["status"] for r in rows.values()] == ["success"] * 3 + ["failed"] * 4 + ["partial"]
    assert "The PDF specified was not valid" in rows["m-broken.pdf"]["error"]
    assert rows["m-empty.pdf"]["error"] == "empty file (0 bytes)"
    assert rows["m-huge.pdf"]["error"].startswith("the PDF is 52.4 MB; a Claude request takes a PDF of at most")
    assert rows["m-photo.pdf"]["error"] == "not a PDF: the file starts with b'GIF89a, '"
    assert "missing or illegible: patient_name" in rows["m-scan.pdf"]["error"] and rows["m-scan.pdf"]["cost_usd"] > 0
    tokens = [rows[name]["input_tokens"] for name in ("a0000.pdf", "m-scan.pdf", "m-empty.pdf")]
    assert [type(count) for count in tokens] == [int, int, type(None)]  # counts stay integers beside empty ones
    seen = apis.stats("drive")
    assert seen["media_calls"] == 6 and seen["bytes_sent"] < 1_000_000  # the 50 MB file is not downloaded
    failed = (tmp_path / "out.failed.csv").read_text().splitlines()
    assert len(failed) == 5 and failed[0] == "id,name,path,status,error"

    done = run_cli("prescriptions-failed", str(out), "-o", str(tmp_path / "again.csv"), "--include-partial")
    assert done.returncode == 0 and "again.csv: 5 files" in done.stdout
    requests = apis.stats("anthropic")["total"]
    again = run_cli("prescriptions", "--folder-id", folder, "-o", str(tmp_path / "again.jsonl"),
                    "--files", str(tmp_path / "again.csv"), *cli_options(apis), env={"ANTHROPIC_API_KEY": KEY})
    assert again.returncode == 1  # 4 of the 5 fail again: more than half, after the whole output
    assert again.stderr.strip().splitlines()[-1].startswith(
        "batchflows: error: 4 of 5 rows failed (80%, more than the 50% a run accepts); most common problem (")
    assert [r["name"] for r in read_jsonl(tmp_path / "again.jsonl")] == list(rows)[3:]
    assert apis.stats("anthropic")["total"] - requests == 2  # broken and scanned; the others fail before
    exported = (tmp_path / "again.failed.csv").read_text().splitlines()
    assert len(exported) == 1 + 4  # the failed files are exported although the run failed


def test_a_test_size_run_lists_every_page_and_projects_the_cost_of_the_whole_folder(apis, tmp_path):
    fillers = tuple({"name": f"z{n:04d}.pdf", "size": 200} for n in range(1_100))
    folder, _ = make_folder(apis, tmp_path, 10, fillers)
    done = run_cli("prescriptions", "--folder-id", folder, "-o", str(tmp_path / "out.jsonl"), "--limit", "10",
                   *cli_options(apis), env={"ANTHROPIC_API_KEY": KEY})
    assert done.returncode == 0, done.stderr
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert len(rows) == 10 and {r["status"] for r in rows} == {"success"}
    assert apis.stats("drive")["list_calls"] == 2  # 1 110 files: two pages of at most 1 000
    per_file = sum(r["cost_usd"] for r in rows) / 10
    projected = float(done.stdout.split("projected for all 1,110 rows: $")[1].split()[0].replace(",", ""))
    assert projected == pytest.approx(per_file * 1_110, abs=0.01)


def test_claude_429_529_500_and_timeouts_are_survived_and_the_limits_hold(apis, tmp_path):
    folder, _ = make_folder(apis, tmp_path, 24)
    apis.configure("anthropic", api_key=KEY, latency=0.1, error_rate=0.3, error_statuses=[500, 529],
                   throttle_rate=0.1, retry_after=0.2, hang_rate=0.06, hang_seconds=30, seed=5)
    prescription_extraction(folder, str(tmp_path / "out.jsonl"), claude_timeout=2, concurrency=6,
                            **options(apis, claude_per_minute=600))
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert [r["status"] for r in rows] == ["success"] * 24
    seen = apis.stats("anthropic")
    assert {"429", "500", "529"} <= set(seen["statuses"]) and seen["hangs"] > 0

    apis.reset()
    apis.configure("anthropic", api_key=KEY, latency=0.05, rate_limit=12, rate_window=4)  # 180/min
    apis.configure("drive", rate_limit=16, rate_window=4)  # 240/min
    folder, _ = make_folder(apis, tmp_path, 40)
    prescription_extraction(folder, str(tmp_path / "limited.jsonl"), concurrency=8,
                            **options(apis, claude_per_minute=180, drive_per_minute=240))
    assert {r["status"] for r in read_jsonl(tmp_path / "limited.jsonl")} == {"success"}
    claude, drive = apis.stats("anthropic", window=4), apis.stats("drive", window=4)
    assert set(claude["statuses"]) == {"200"} and claude["max_window"] <= 12
    assert set(drive["statuses"]) == {"200", "206"} and drive["max_window"] <= 16


def test_a_killed_run_reruns_without_downloading_or_extracting_finished_files_again(apis, tmp_path):
    folder, _ = make_folder(apis, tmp_path, 40)
    apis.configure("anthropic", api_key=KEY, latency=0.4)
    command = [sys.executable, "-m", "flows.cli", "prescriptions", "--folder-id", folder, "-o",
               str(tmp_path / "out.jsonl"), "--concurrency", "4", "--chunk-size", "10", *cli_options(apis)]
    kill_when(command, lambda: apis.stats("anthropic")["documents"] >= 20, env={"ANTHROPIC_API_KEY": KEY})
    before = apis.stats("anthropic")["documents"]
    done = run_cli(*command[3:], env={"ANTHROPIC_API_KEY": KEY})
    assert done.returncode == 0, done.stderr
    assert [r["status"] for r in read_jsonl(tmp_path / "out.jsonl")] == ["success"] * 40
    assert "40 success, 0 failed (reasons in the 'error' column)" in done.stdout  # the file's words
    documents, downloads = apis.stats("anthropic")["documents"], apis.stats("drive")["media_calls"]
    assert 20 <= before < 40 and documents - 40 <= 4 + 4  # in flight at the kill + the last 0.25 s unjournaled
    assert downloads - 40 <= 4  # only downloads cut short; a file waiting for Claude stays on disk


def test_files_added_to_the_folder_are_the_only_ones_extracted_on_the_next_run(apis, tmp_path):
    folder, _ = make_folder(apis, tmp_path, 12)
    prescription_extraction(folder, str(tmp_path / "first.jsonl"), chunk_size=5, **options(apis))
    write_prescription_pdf(tmp_path / "new.pdf", 99)
    add(apis.url, *({"name": f"0-new{n}.pdf", "path": str(tmp_path / "new.pdf"), "parents": [folder]} for n in range(3)))
    before = apis.stats("anthropic")["documents"], apis.stats("drive")["media_calls"]
    prescription_extraction(folder, str(tmp_path / "second.jsonl"), chunk_size=5, **options(apis))
    rows = read_jsonl(tmp_path / "second.jsonl")
    assert [r["name"] for r in rows] == [f"0-new{n}.pdf" for n in range(3)] + [r["name"] for r in read_jsonl(
        tmp_path / "first.jsonl")] and {r["status"] for r in rows} == {"success"}
    after = apis.stats("anthropic")["documents"], apis.stats("drive")["media_calls"]
    assert (after[0] - before[0], after[1] - before[1]) == (3, 3)  # every chunk shifted; only new files sent


def killed_batch_run(apis, folder: str, tmp_path) -> list[str]:
    """A batch-mode CLI run killed once it has created 3 batches; returns its command for the rerun."""
    command = [sys.executable, "-m", "flows.cli", "prescriptions", "--folder-id", folder, "-o",
               str(tmp_path / "out.jsonl"), "--mode", "batch", "--chunk-size", "10", *cli_options(apis)]
    kill_when(command, lambda: apis.stats("anthropic")["batches_created"] >= 3, env={"ANTHROPIC_API_KEY": KEY})
    return command


def rerun_to_the_end(command: list[str], tmp_path, truths: list[dict]) -> list[dict]:
    """The killed run's command again: every file a success with its own fields; returns the rows."""
    done = run_cli(*command[3:], env={"ANTHROPIC_API_KEY": KEY})
    assert done.returncode == 0, done.stderr
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert [r["status"] for r in rows] == ["success"] * len(truths)
    assert [r["fields"]["patient_name"] for r in rows] == [t["patient_name"] for t in truths]
    return rows


def test_batch_mode_resumes_polling_after_a_kill_and_resubmits_failed_requests_once(apis, tmp_path, monkeypatch):
    folder, truths = make_folder(apis, tmp_path, 30)
    apis.configure("anthropic", api_key=KEY, batch_seconds=4)
    command = killed_batch_run(apis, folder, tmp_path)
    rows = rerun_to_the_end(command, tmp_path, truths)
    seen = apis.stats("anthropic")
    assert seen["batches_created"] == 3 and seen["batch_requests"] == 30 and seen["documents"] == 30
    assert apis.stats("drive")["media_calls"] == 30

    realtime = read_jsonl(tmp_path / "out.jsonl")
    prescription_extraction(folder, str(tmp_path / "realtime.jsonl"), **options(apis))
    for batch_row, realtime_row in zip(realtime, read_jsonl(tmp_path / "realtime.jsonl")):
        assert batch_row["cost_usd"] == pytest.approx(realtime_row["cost_usd"] / 2, rel=0.01)

    apis.reset()  # the emulator gives the same ids again: a fresh work dir, or the known batches answer
    monkeypatch.setenv("BATCHFLOWS_WORK_DIR", str(tmp_path / "work2"))
    apis.configure("anthropic", api_key=KEY, batch_seconds=0.5, batch_error_rate=0.3, batch_expire_rate=0.1)
    folder, _ = make_folder(apis, tmp_path, 40)
    prescription_extraction(folder, str(tmp_path / "flaky.jsonl"), mode="batch", **options(apis))
    rows = read_jsonl(tmp_path / "flaky.jsonl")
    seen = apis.stats("anthropic")
    resubmitted = seen["batch_requests"] - 40
    assert 0 < resubmitted <= 40 and seen["batches_created"] >= 2
    failed = [r for r in rows if r["status"] == "failed"]
    assert all("(after one resubmission)" in r["error"] for r in failed) and len(failed) < resubmitted
    assert [r["status"] for r in rows if r not in failed] == ["success"] * (40 - len(failed))


def test_a_kill_between_batch_creation_and_its_answer_pays_each_request_once(apis, tmp_path):
    folder, truths = make_folder(apis, tmp_path, 30)
    apis.configure("anthropic", api_key=KEY, batch_seconds=1, batch_answer_delay=120)  # the answers never come
    command = killed_batch_run(apis, folder, tmp_path)
    assert apis.stats("anthropic")["batches_created"] == 3  # three batches exist, none of their ids arrived
    for lost in (tmp_path / "work" / "cache").glob("message-batches.sqlite*"):
        lost.unlink()  # the batch ids are lost too: only the intents and the API's list remain
    apis.configure("anthropic", batch_answer_delay=0)
    rows = rerun_to_the_end(command, tmp_path, truths)
    seen = apis.stats("anthropic")
    assert (seen["batches_created"], seen["batch_requests"]) == (3, 30)  # nothing submitted twice
    holding = batch_holding(apis)
    assert len(holding) == 30 and all(len(batches) == 1 for batches in holding.values())
    assert sorted(r["batch_id"] for r in rows) == sorted(batches[0] for batches in holding.values())
    assert apis.stats("drive")["media_calls"] == 30  # adopted requests are not downloaded again


def test_lost_create_answers_adopt_the_batch_instead_of_creating_another(apis, tmp_path):
    folder, _ = make_folder(apis, tmp_path, 40)
    apis.configure("anthropic", api_key=KEY, batch_seconds=0.5, batch_answer_lost_rate=0.6, seed=4)
    prescription_extraction(folder, str(tmp_path / "out.jsonl"), mode="batch", chunk_size=10, **options(apis))
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert [r["status"] for r in rows] == ["success"] * 40
    seen = apis.stats("anthropic")
    assert seen["statuses"].get("500", 0) > 0 and seen["batch_requests"] == 40 and seen["batches_created"] == 4
    holding = batch_holding(apis)
    assert len(holding) == 40 and all(len(batches) == 1 for batches in holding.values())
    assert {r["batch_id"] for r in rows} == {batches[0] for batches in holding.values()}
    assert all(isinstance(r[name], int) for r in rows for name in ("input_tokens", "output_tokens",
                                                                     "cache_write_tokens", "cache_read_tokens"))


def test_ten_realtime_runs_on_fresh_work_dirs_lose_no_row_to_our_machinery(apis, tmp_path, monkeypatch):
    folder, truths = make_folder(apis, tmp_path, 120)
    for run in range(10):  # every run opens its stores fresh, from chunks running at once
        monkeypatch.setenv("BATCHFLOWS_WORK_DIR", str(tmp_path / f"work{run}"))
        prescription_extraction(folder, str(tmp_path / f"out{run}.jsonl"), chunk_size=10, concurrency=12,
                                workers=6, **options(apis))
        rows = read_jsonl(tmp_path / f"out{run}.jsonl")
        assert [(r["status"], r["error"]) for r in rows] == [("success", "")] * 120, run
        assert [r["fields"]["patient_name"] for r in rows] == [t["patient_name"] for t in truths]
        assert all(isinstance(r["input_tokens"], int) for r in rows)
    assert apis.stats("anthropic")["documents"] == 10 * 120


def test_api_keys_and_patient_data_stay_out_of_logs(apis, tmp_path):
    folder, truths = make_folder(apis, tmp_path, 5)
    done = run_cli("prescriptions", "--folder-id", folder, "-o", str(tmp_path / "out.jsonl"), *cli_options(apis),
                   env={"ANTHROPIC_API_KEY": KEY, "PREFECT_LOGGING_LEVEL": "DEBUG"})
    assert done.returncode == 0, done.stderr
    texts = [done.stdout, done.stderr, *server_texts()]
    secrets = [KEY, *(t["patient_name"] for t in truths), *(t["prescriber"] for t in truths)]
    assert not [s for s in secrets if any(s in text for text in texts)]
    assert truths[0]["patient_name"] in (tmp_path / "out.jsonl").read_text()


def test_a_50_mb_download_is_streamed_not_held_in_memory(emulator, tmp_path):
    write_large_pdf(tmp_path / "big.pdf", megabytes=50)
    file = add(emulator.url, {"name": "big.pdf", "path": str(tmp_path / "big.pdf")})[0]
    tracemalloc.start()
    started = time.monotonic()
    path, _ = drive_run(emulator, tmp_path, lambda d: d.download(file, tmp_path / "dl", chunk_bytes=4 << 20))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert path.stat().st_size == (tmp_path / "big.pdf").stat().st_size and time.monotonic() - started < 120
    assert peak < 20 << 20  # 4 MB chunks: a few chunks' worth, never the 50 MB file
