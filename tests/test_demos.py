"""`batchflows demo [WORKLOAD]` for every workload (generated input in --dir, emulators, output paths
printed), the emulator names in `python -m emulators`, and the book-requests history-columns error."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import read_table, run_cli

from emulators.prescriptions import write_prescription_pdf
from flows.cli import main

EMULATORS = ("anthropic", "cards", "chat", "drive", "geocoding", "messaging", "serper")


def demo(directory: Path, *args: str) -> tuple[str, dict[str, Path]]:
    """Run the demo in a child process; its stdout and the outputs it printed (name -> path)."""
    result = run_cli("demo", *args, "--dir", str(directory), timeout=240)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    outputs = {m[1]: Path(m[2]) for m in re.finditer(r"^  output (.+?): (.+)$", result.stdout, re.MULTILINE)}
    assert outputs and all(path.exists() for path in outputs.values()), result.stdout
    return result.stdout, outputs


def test_the_default_demo_is_card_recommendations(tmp_path):
    out, outputs = demo(tmp_path, "--rows", "40")
    assert list(outputs) == ["recommendations"] and outputs["recommendations"] == tmp_path / "recommendations.xlsx"
    users = pd.read_csv(tmp_path / "users.csv", dtype=str, keep_default_na=False)
    recommended = read_table(outputs["recommendations"])
    assert list(recommended.columns) == [*users.columns, "recommended_card", "issuer", "annual_savings",
                                         "recommendations_json", "status", "error"]
    assert recommended.user_id.tolist() == users.user_id.tolist() and len(users) == 43  # 40 + 3 bad rows
    failed = recommended[recommended.status == "failed"]
    assert failed.user_id.tolist() == ["u_bad_spend", "", "u00000003"]
    assert [error.split(": ", 1)[1] for error in failed.error] == [
        "'lots' is not a number", "empty", "duplicate user_id 'u00000003' (first seen at row 4)"]
    done = recommended[recommended.status == "ok"]
    assert len(done) == 40 and (done.recommended_card != "").all() and (done.error == "").all()
    seen = re.search(r"emulators received: cards (\d+) requests \(at most (\d+) in any second, limit 100\)", out)
    assert seen and int(seen[1]) >= 40 and int(seen[2]) <= 100, out
    assert "40 ok, 3 failed" in out


def test_personalised_emails_demo(tmp_path):
    out, outputs = demo(tmp_path, "personalised-emails", "--rows", "24")
    emails = read_table(outputs["emails"])
    assert len(emails) == 25 and list(emails.columns[-8:]) == [
        "research_summary", "research_key_kind", "email_line", "input_tokens", "output_tokens", "cost_usd",
        "status", "error"]
    written, bad = emails.iloc[:24], emails.iloc[24]
    assert (written.status == "ok").all() and (written.email_line != "").all()
    assert (written.input_tokens.astype(int) > 0).all() and (written.cost_usd.astype(float) > 0).all()
    assert bad.status == "failed" and "column email: 'not-an-email' is not an email address" in bad.error
    assert re.search(r"emulators received: anthropic 24 requests .*; serper 8 requests", out), out


def test_book_requests_demo(tmp_path):
    out, outputs = demo(tmp_path, "book-requests", "--rows", "60")
    assert set(outputs) == {"accepted", "rejected", "duplicates", "messages", "duplicate model"}
    accepted, rejected, duplicates, messages = (read_table(outputs[name]) for name in
                                                ("accepted", "rejected", "duplicates", "messages"))
    requests = pd.read_csv(tmp_path / "requests.csv", dtype=str, keep_default_na=False)
    assert len(requests) == 60 and sorted([*accepted.name, *rejected.name]) == sorted(requests.name)
    assert len(accepted) and len(rejected) and (rejected.reasons != "").all()
    assert {"request_id", "kind", "matched_id", "match_probability", "reason"} <= set(duplicates.columns) and len(duplicates)
    assert messages.request_id.tolist() == accepted.request_id.tolist() and (messages.status == "sent").all()
    assert json.loads(outputs["duplicate model"].read_text())
    assert f"{len(accepted)} accepted, {len(rejected)} rejected of 60 requests; messages: sent {len(accepted)}" in out


def test_prescriptions_demo(tmp_path):
    out, outputs = demo(tmp_path, "prescriptions", "--rows", "6")
    assert outputs["failed files"] == tmp_path / "prescriptions.failed.csv"
    rows = {row["name"]: row for row in map(json.loads, outputs["extractions"].read_text().splitlines())}
    assert {name: row["status"] for name, row in rows.items()} == {
        **{f"prescription-{n:03d}.pdf": "success" for n in range(4)},
        "scan-without-text.pdf": "partial", "corrupt.pdf": "failed"}
    truth = write_prescription_pdf(tmp_path / "truth.pdf", 2)
    assert rows["prescription-002.pdf"]["fields"]["patient_name"] == truth["patient_name"]
    assert rows["corrupt.pdf"]["error"].startswith("HTTP 400")
    failed = pd.read_csv(outputs["failed files"], dtype=str)
    assert failed.name.tolist() == ["corrupt.pdf"] and failed.status.tolist() == ["failed"]
    assert re.search(r"emulators received: drive \d+ requests .*; anthropic 6 requests", out), out


def test_file_metadata_demo(tmp_path):
    out, outputs = demo(tmp_path, "file-metadata", "--rows", "14")
    files = read_table(outputs["metadata"]).set_index("path")
    tree = tmp_path / "files"
    assert sorted(files.index) == sorted(str(path) for path in tree.rglob("*") if path.is_file()) and len(files) == 14
    assert files.loc[str(tree / "other" / "random.bin"), "status"] == "unsupported"
    formats = files.drop([str(tree / "other" / "random.bin")])
    assert (formats.status == "ok").all()
    assert set(formats.format) == {"wav", "png", "fits", "hdf5", "netcdf", "dicom", "pdf", "docx", "xlsx", "avi",
                                   "mp4", "mkv"}
    assert files.loc[str(tree / "other" / "cut.png"), "error"] == "cut file? no IEND chunk at the end"
    assert "emulators received" not in out and "13 ok, 0 failed, 1 unsupported" in out


def test_demo_refuses_an_unknown_workload_and_no_rows(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "cards"])
    assert ("argument workload: invalid choice: 'cards' (choose from 'card-recommendations', 'personalised-emails', "
            "'book-requests', 'prescriptions', 'file-metadata')") in capsys.readouterr().err
    assert main(["demo", "book-requests", "--rows", "0"]) == 1
    assert capsys.readouterr().err.endswith("batchflows: error: a demo needs at least 1 of its requests, not 0\n")


def emulators_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emulators", *args], capture_output=True, text=True, timeout=60)


def test_emulator_help_lists_every_emulator_and_an_unknown_name_is_refused_with_the_list():
    shown = emulators_cli("--help")
    assert shown.returncode == 0
    listed = re.findall(r"^  (\w+) +(\S.*)$", shown.stdout.split("emulated APIs")[1], re.MULTILINE)
    assert [name for name, _ in listed] == list(EMULATORS)
    assert dict(listed)["cards"].startswith("Card-recommendation API: POST /v1/recommendations")
    refused = emulators_cli("--port", "0", "--settings", '{"cards": {}, "gecoding": {"latency": 1}}')
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.splitlines()[-1] == ("python -m emulators: error: unknown emulated API(s) gecoding; the "
                                               f"emulators are {', '.join(EMULATORS)} (python -m emulators --help)")


def test_history_missing_columns_names_only_the_files_columns(tmp_path, emulator, capsys, monkeypatch):
    monkeypatch.setenv("GOOGLE_MAPS_API_KEY", "a-key")
    history = tmp_path / "history.csv"
    pd.DataFrame({"name": ["Ann Lee"], "phone": ["+1 312 555 0100"], "street": ["1 Oak St"]}).to_csv(history,
                                                                                                 index=False)
    requests = tmp_path / "requests.csv"
    pd.DataFrame({"name": ["Bo Li"], "phone": ["+1 312 555 0101"], "address": ["2 Elm St, Chicago"]}).to_csv(
        requests, index=False)
    code = main(["book-requests", str(requests), "--history", str(history), "-o", str(tmp_path / "out"),
                 "--geocoding-base-url", emulator.url, "--messaging-base-url", emulator.url + "/messaging"])
    assert code == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"batchflows: error: {history}: history file lacks column(s) request_id, address; expected request_id, "
        "name, address (phone optional), found name, phone, street")
    assert emulator.stats("geocoding")["total"] == 0
