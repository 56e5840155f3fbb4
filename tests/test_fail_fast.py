"""Bad parameters, config values, paths and Drive folders stop a run before its first paid call,
with one line naming the key or option, the value and what is allowed; no traceback without --debug."""
import json

import pytest
from conftest import run_cli, write_config

from flows.cli import main
from test_prescriptions import KEY as CLAUDE_KEY
from test_prescriptions import FOLDER, add, cli_options


@pytest.fixture
def users(workspace):
    path = workspace / "users.csv"
    path.write_text("user_id,monthly_spend\nu1,10\nu2,20\n")
    return path


def error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("batchflows: error:")]
    assert len(lines) == 1, lines
    return lines[0].removeprefix("batchflows: error: ")


@pytest.mark.parametrize("name, text, expected", [
    ("config.json", json.dumps({"processing": {"concurrency": "fifty"}}),
     "config.json: processing.concurrency 'fifty': Input should be a valid integer"),
    ("config.yaml", "api:\n  timeout: soon\n", "config.yaml: api.timeout 'soon': Input should be a valid number"),
    ("config.json", json.dumps({"processing": {"rate_limit_per_minute": -100}}),
     "config.json: processing.rate_limit_per_minute -100: Input should be greater than 0"),
    ("config.json", json.dumps({"api": {"base_url": "127.0.0.1:8000"}}),
     "config.json: api.base_url '127.0.0.1:8000': a base URL needs http:// or https:// and a host"),
    ("config.json", json.dumps({"procesing": {"chunk_size": 10}}), "config.json: procesing: unknown key"),
    ("config.json", "{'api': 1}", "config.json: not valid JSON: Expecting property name enclosed in double quotes"),
])
def test_a_bad_config_value_stops_with_one_line_naming_the_key(workspace, emulator, users, capsys, name, text,
                                                               expected):
    (workspace / name).write_text(text)
    assert main(["card-recommendations", str(users), "-o", str(workspace / "out.csv"),
                 "--config", str(workspace / name)]) == 1
    assert error_line(capsys).startswith(f"{workspace}/{expected}")
    assert emulator.stats("cards")["total"] == 0 and not (workspace / "out.csv").exists()


@pytest.mark.parametrize("option, value, expected", [
    ("--limit", "-1", "--limit '-1': Input should be greater than or equal to 1"),
    ("--concurrency", "-5", "--concurrency '-5': Input should be greater than or equal to 1"),
    ("--chunk-size", "0", "--chunk-size '0': Input should be greater than or equal to 1"),
    ("--workers", "many", "--workers 'many': Input should be a valid integer"),
    ("--runner", "spark", "--runner 'spark': thread, dask, or tcp://host:port of a Dask scheduler"),
    ("--encoding", "klingon", "--encoding 'klingon': not a known text encoding"),
    ("--output", "out.docx", "--output 'out.docx': the file type must be one of"),
])
def test_a_bad_option_stops_before_the_flow_runs(workspace, emulator, users, capsys, option, value, expected):
    config = write_config(workspace / "config.json", emulator.url)
    arguments = {"--output": str(workspace / "out.csv"), option: value}
    assert main(["card-recommendations", str(users), "--config", str(config),
                 *(word for pair in arguments.items() for word in pair)]) == 1
    assert error_line(capsys).startswith(expected)
    assert emulator.stats("cards")["total"] == 0


def test_an_endpoint_without_a_scheme_is_refused_before_any_call(workspace, emulator, capsys):
    leads = workspace / "leads.csv"
    leads.write_text("email,first_name,company,domain\na@b.com,Ann,Acme,acme.com\n")
    assert main(["personalised-emails", str(leads), "-o", str(workspace / "out.csv"),
                 "--search-base-url", "127.0.0.1:8000", "--llm-requests-per-minute", "0"]) == 1
    line = error_line(capsys)
    assert "--search-base-url '127.0.0.1:8000': a base URL needs http:// or https:// and a host" in line
    assert "--llm-requests-per-minute '0': Input should be greater than 0" in line


def test_an_unwritable_output_or_the_input_itself_stops_before_any_request(workspace, emulator, users, capsys):
    config = write_config(workspace / "config.json", emulator.url)
    assert main(["card-recommendations", str(users), "-o", "/proc/out.csv", "--config", str(config)]) == 1
    assert error_line(capsys).startswith("/proc: cannot write the output there")
    before = users.read_bytes()
    assert main(["card-recommendations", str(users), "-o", str(users), "--config", str(config)]) == 1
    assert error_line(capsys) == f"{users}: is also the input; write the output to another file"
    assert users.read_bytes() == before
    assert main(["card-recommendations", str(workspace / "nobody.csv"), "-o", str(workspace / "o.csv"),
                 "--config", str(config)]) == 1
    assert error_line(capsys) == f"{workspace / 'nobody.csv'}: no such file"
    assert emulator.stats("cards")["total"] == 0


def test_a_fatal_error_is_one_line_without_a_traceback_unless_debug(workspace, emulator, users):
    config = write_config(workspace / "config.json", emulator.url)
    command = ["card-recommendations", str(users), "-o", str(workspace / "out.csv"), "--config", str(config)]
    quiet = run_cli(*command, env={"CARD_API_KEY": ""})
    assert quiet.returncode == 1
    assert quiet.stderr.count("batchflows: error: card API key missing: set the environment variable "
                              "CARD_API_KEY") == 1
    assert "Traceback" not in quiet.stderr + quiet.stdout
    loud = run_cli("--debug", *command, env={"CARD_API_KEY": ""})
    assert loud.returncode == 1 and "Traceback" in loud.stderr


def test_a_drive_folder_that_is_missing_is_not_reported_as_empty(emulator, workspace, capsys, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", CLAUDE_KEY)
    emulator.configure("anthropic", api_key=CLAUDE_KEY)
    out = str(workspace / "out.jsonl")
    assert main(["prescriptions", "--folder-id", "no-such-folder", "-o", out, *cli_options(emulator)]) == 1
    assert error_line(capsys).startswith("Drive folder 'no-such-folder' was not found: check the id, and that the "
                                         "folder is shared")
    empty = add(emulator.url, {"name": "empty", "mimeType": FOLDER})[0]["id"]
    assert main(["prescriptions", "--folder-id", empty, "-o", out, *cli_options(emulator)]) == 1
    assert error_line(capsys) == f"Drive folder {empty} has no PDF files"
    assert emulator.stats("anthropic")["total"] == 0
