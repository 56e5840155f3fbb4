"""Typed inputs end to end: the card flow sends parquet values as the JSON they mean (checked by the
emulator's answers, which depend on every byte of the body), writes them back with their types, and
a run given the input's encoding reads a cp1252 file right."""
import datetime as dt
import json
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import write_config
from prefect import flow

from emulators.cards import recommend
from flows.card_recommendations import card_recommendations
from tasks.engine.job import Job, RunOptions
from tasks.engine.outcomes import TooManyFailed
from tasks.engine.run import run_job

UTC = dt.timezone.utc

# The bodies the API must receive: empty cells left out, everything else as JSON (not Python repr).
EXPECTED_BODIES = {
    "u1": {"user_id": "u1", "signed_up": "2024-03-01T04:30:00-05:00", "categories": ["fuel", "travel"],
           "address": {"city": "Austin", "zip": "73301"}, "monthly_spend": 1234.5, "credit_score": 720, "risk": 0.25},
    "u2": {"user_id": "u2", "signed_up": "2024-07-01T08:00:00.123456-04:00", "categories": [],
           "address": {"city": "Boston", "zip": None}, "monthly_spend": 80.0},
}


def typed_users(path):
    pq.write_table(pa.table({
        "user_id": ["u1", "u2", "u3"],
        "signed_up": pa.array([dt.datetime(2024, 3, 1, 9, 30, tzinfo=UTC),
                               dt.datetime(2024, 7, 1, 12, 0, 0, 123456, tzinfo=UTC), None],
                              pa.timestamp("us", tz="America/New_York")),
        "categories": pa.array([["fuel", "travel"], [], None], pa.list_(pa.string())),
        "address": pa.array([{"city": "Austin", "zip": "73301"}, {"city": "Boston", "zip": None}, None]),
        "monthly_spend": pa.array([Decimal("1234.50"), Decimal("80.00"), Decimal("99.99")], pa.decimal128(10, 2)),
        "credit_score": pa.array([720, None, 650], pa.int64()),
        "risk": [0.25, None, float("inf")],  # u3's has no JSON form
    }), path)
    return path


def test_card_flow_sends_parquet_types_as_json_and_writes_them_back(workspace, emulator):
    users = typed_users(workspace / "users.parquet")
    config = write_config(workspace / "config.json", emulator.url)
    for out in ("out.parquet", "out.csv"):
        figures = card_recommendations(str(users), str(workspace / out), str(config))
        assert figures["rows"] == 3 and figures["ok"] == 2
    assert emulator.stats("cards")["ok_keys"] == 2  # u3 was never sent; the CSV run came from the journal
    table = pq.read_table(workspace / "out.parquet")
    out = table.to_pylist()
    for row in out[:2]:
        expected = recommend(EXPECTED_BODIES[row["user_id"]])["recommendations"]  # a byte off: other savings
        assert row["status"] == "ok" and json.loads(row["recommendations_json"]) == expected
    assert out[2]["status"] == "failed"
    assert out[2]["error"] == "users.parquet row 3: column risk: inf is not a JSON number"
    assert table.schema.field("credit_score").type == pa.int64()
    assert [r["credit_score"] for r in out] == [720, None, 650]
    assert out[0]["signed_up"] == "2024-03-01T04:30:00-05:00" and json.loads(out[1]["address"])["zip"] is None
    csv = pd.read_csv(workspace / "out.csv", dtype=str, keep_default_na=False)
    assert csv.credit_score.tolist() == ["720", "", "650"]
    assert csv.categories.tolist() == ['["fuel", "travel"]', "[]", ""]
    assert csv.monthly_spend.tolist() == ["1234.5", "80.0", "99.99"]


async def echo_city(row, clients):
    return {"echo": row["city"]}


@flow(name="engine-encoding")
def encoding_run(input_path: str, output_path: str, work_dir: str, encoding: str) -> dict:
    job = Job("echo", echo_city, ("echo",), (), work_dir, key_column="user_id")
    return run_job(job, input_path, output_path, RunOptions(chunk_size=2, encoding=encoding))


def test_a_run_given_the_input_encoding_reads_a_cp1252_csv(workspace):
    source = workspace / "users.csv"
    source.write_bytes("user_id;city\nu1;Montréal\nu2;Zürich\nu3;Kraków €5\n".encode("cp1252"))
    encoding_run(str(source), str(workspace / "out.csv"), str(workspace / "work"), "cp1252")
    out = pd.read_csv(workspace / "out.csv", dtype=str, keep_default_na=False, encoding="utf-8")
    assert out.city.tolist() == out.echo.tolist() == ["Montréal", "Zürich", "Kraków €5"]
    assert (out.status == "ok").all()
    with pytest.raises(TooManyFailed):  # every row failed; the output is written all the same
        encoding_run(str(source), str(workspace / "default.csv"), str(workspace / "work"), "utf-8-sig")
    out = pd.read_csv(workspace / "default.csv", dtype=str, keep_default_na=False)
    assert out.status.tolist() == ["failed", "failed", "failed"]
    assert out.error[0] == ("users.csv row 1 (line 2): column city: not UTF-8 (byte 0xe9 at line 2); "
                            "give the file's encoding, e.g. --encoding cp1252")
