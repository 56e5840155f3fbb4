"""The CLI with bad input, missing or wrong keys, and secrets kept out of every output."""
import pandas as pd
from conftest import API_KEY, read_table, run_cli, server_texts, write_config
from openpyxl import Workbook

from flows.cli import main
from tasks.samples.tables import users_frame


def cli(workspace, emulator, users, *extra, out="out.csv", **processing):
    config = write_config(workspace / "config.json", emulator.url, **processing)
    return main(["card-recommendations", str(users), "-o", str(workspace / out), "--config", str(config), *extra])


def test_mixed_bad_rows_are_recorded_and_good_rows_processed(workspace, emulator, capsys):
    users = workspace / "users.csv"
    users.write_bytes(
        b"user_id,monthly_spend,top_category,credit_score,city\n"
        b"u1,1200,dining,700,Austin\n"
        b"u2,lots,fuel,650,Boston\n"          # not a number
        b"u3,300,travel,720,Montr\xe9al\n"   # not UTF-8
        b"u4,80,fuel\n"                      # ragged
        b",50,fuel,600,Denver\n"             # empty user_id
        b"u1,999,dining,700,Austin\n"        # duplicate user_id
        b"u7,-5,dining,700,Austin\n"         # the API refuses it (422)
        b"u8,450,online,690,Miami\n"
    )
    assert cli(workspace, emulator, users) == 1  # more than half the rows failed: after the whole output
    out = read_table(workspace / "out.csv")
    assert out.user_id.tolist() == ["u1", "u2", "u3", "u4", "", "u1", "u7", "u8"]
    assert out.status.tolist() == ["ok", "failed", "failed", "failed", "failed", "failed", "failed", "ok"]
    errors = out.error.tolist()
    assert errors[1] == "users.csv row 2, column monthly_spend: 'lots' is not a number"
    assert errors[2].startswith("users.csv row 3 (line 4): column city: not UTF-8 (byte 0xe9 at line 4)")
    assert errors[3] == "users.csv row 4 (line 5): has 3 fields, the header has 5"
    assert errors[4] == "users.csv row 5, column user_id: empty"
    assert errors[5] == "users.csv row 6, column user_id: duplicate user_id 'u1' (first seen at row 1)"
    assert errors[6] == "HTTP 422: monthly_spend: Input should be greater than or equal to 0"
    stats = emulator.stats("cards")
    assert stats["total"] == 3 and set(stats["repeated_keys"]) == set()  # u1, u7, u8 only
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "batchflows: error: 6 of 8 rows failed (75%, more than the 50% a run accepts); most common problem (1 row): "
        f"users.csv row 2, column monthly_spend: 'lots' is not a number; output written to {workspace / 'out.csv'}")
    assert cli(workspace, emulator, users, "--max-failed-fraction", "0.8") == 0  # 75 % failed is accepted now
    assert emulator.stats("cards")["total"] == 3  # the rerun resumed: nothing sent again


def test_whole_file_problems_stop_before_any_request(workspace, emulator, capsys):
    no_id = workspace / "no_id.csv"
    no_id.write_text("id,monthly_spend\n1,2\n")
    assert cli(workspace, emulator, no_id) == 1
    assert "no_id.csv: missing column(s) ['user_id']; found ['id', 'monthly_spend']" in capsys.readouterr().err
    empty = workspace / "empty.csv"
    empty.write_text("")
    assert cli(workspace, emulator, empty) == 1
    assert "empty.csv: the file is empty" in capsys.readouterr().err
    assert emulator.stats("cards")["total"] == 0


def test_header_only_input_gives_a_header_only_output(workspace, emulator, capsys):
    users = workspace / "users.csv"
    users.write_text("user_id,monthly_spend\n")
    assert cli(workspace, emulator, users, out="out.xlsx") == 0
    out = read_table(workspace / "out.xlsx")
    assert len(out) == 0 and list(out.columns) == ["user_id", "monthly_spend", "recommended_card", "issuer",
                                                   "annual_savings", "recommendations_json", "status", "error"]
    assert emulator.stats("cards")["total"] == 0
    assert "0 ok, 0 failed" in capsys.readouterr().out


def test_xlsx_with_the_data_on_the_second_sheet(workspace, emulator):
    book = Workbook()
    book.active.title = "About"
    book.active.append(["Exported by the CRM"])
    sheet = book.create_sheet("Users")
    frame = users_frame(0, 50)
    sheet.append(list(frame.columns))
    for values in frame.itertuples(index=False):
        sheet.append([v.item() if hasattr(v, "item") else v for v in values])
    book.save(workspace / "users.xlsx")
    assert cli(workspace, emulator, workspace / "users.xlsx", out="out.xlsx") == 0
    out = read_table(workspace / "out.xlsx")
    assert out.user_id.tolist() == frame.user_id.tolist() and (out.status == "ok").all()


def test_parquet_in_parquet_out_with_limit(workspace, emulator):
    users_frame(0, 300).to_parquet(workspace / "users.parquet")
    assert cli(workspace, emulator, workspace / "users.parquet", "--limit", "120", out="out.parquet") == 0
    out = pd.read_parquet(workspace / "out.parquet")
    assert len(out) == 120 and (out.status == "ok").all()
    assert out.credit_score.dtype.kind == "i" and out.annual_savings.dtype.kind == "f"
    assert emulator.stats("cards")["total"] == 120


def test_missing_key_refuses_before_sending(workspace, emulator, monkeypatch, capsys):
    monkeypatch.delenv("CARD_API_KEY")
    users = workspace / "users.csv"
    users_frame(0, 10).to_csv(users, index=False)
    assert cli(workspace, emulator, users) == 1
    assert "card API key missing: set the environment variable CARD_API_KEY" in capsys.readouterr().err
    assert emulator.stats("cards")["total"] == 0


def test_wrong_key_stops_the_run_early(workspace, emulator, monkeypatch, capsys):
    monkeypatch.setenv("CARD_API_KEY", "wrong-key")
    users = workspace / "users.csv"
    users_frame(0, 2000).to_csv(users, index=False)
    assert cli(workspace, emulator, users, concurrency=20, chunk_size=100) == 1
    assert "HTTP 401: Invalid or missing API key" in capsys.readouterr().err
    assert emulator.stats("cards")["total"] < 200
    out = pd.read_csv(workspace / "out.csv", dtype=str, keep_default_na=False)  # nothing lost: every row, a reason
    assert len(out) == 2000 and (out.status == "failed").all()
    assert out.error.str.contains("HTTP 401: Invalid or missing API key").all()


def test_the_key_never_appears_in_logs_artifacts_outputs_or_work_files(workspace, emulator):
    emulator.configure("cards", error_rate=0.2, throttle_rate=0.05, retry_after=1)
    users = workspace / "users.csv"
    frame = users_frame(0, 300)
    frame["monthly_spend"] = frame.monthly_spend.astype(str)
    frame.loc[5, "monthly_spend"] = "bad"
    frame.to_csv(users, index=False)
    config = write_config(workspace / "config.json", emulator.url, max_attempts=2)
    result = run_cli("card-recommendations", str(users), "-o", str(workspace / "out.csv"), "--config", str(config),
                     env={"PREFECT_LOGGING_LEVEL": "DEBUG", "BATCHFLOWS_WORK_DIR": str(workspace / "work")})
    assert result.returncode == 0, result.stderr
    assert "Finished in state" in result.stdout + result.stderr  # the logs were really captured
    texts = [result.stdout, result.stderr]
    texts += [p.read_text(errors="replace") for p in workspace.rglob("*") if p.is_file() and p.suffix != ".pkl"]
    texts += server_texts()
    assert not [text for text in texts if API_KEY in text]


def test_a_latin1_file_names_the_option_that_reads_it_and_reads_with_it(workspace, emulator, capsys):
    users = workspace / "users.csv"
    users.write_bytes("user_id,monthly_spend,city\nu1,120,Montréal\nu2,80,Zürich\n".encode("cp1252"))
    assert cli(workspace, emulator, users) == 1  # both rows failed: more than the half a run accepts
    errors = read_table(workspace / "out.csv").error.tolist()
    assert errors[0] == ("users.csv row 1 (line 2): column city: not UTF-8 (byte 0xe9 at line 2); give the file's "
                         "encoding, e.g. --encoding cp1252")
    assert emulator.stats("cards")["total"] == 0
    capsys.readouterr()
    assert cli(workspace, emulator, users, "--encoding", "cp1252") == 0
    out = read_table(workspace / "out.csv")
    assert out.city.tolist() == ["Montréal", "Zürich"] and out.status.tolist() == ["ok", "ok"]
