"""Input values as plain JSON-able Python values (parquet, JSON lines), encodings, and output values
written back without changing their type or their digits."""
import datetime as dt
import json
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.engine.job import Job, RunOptions
from tasks.engine.staging import stage_input
from tasks.engine.tables import InputError, OutputWriter, read_chunks
from tasks.engine.values import json_value, plain_float



async def echo(row, clients):
    return row


def rows_of(path, size=2, **kwargs) -> list[dict]:
    return pd.concat(list(read_chunks(path, size, **kwargs)), ignore_index=True).to_dict("records")


def typed_table() -> pa.Table:
    return pa.table({
        "user_id": ["u1", "u2", "u3"],
        "signed_up": pa.array([dt.datetime(2024, 3, 1, 9, 30, tzinfo=dt.timezone.utc), None,
                               dt.datetime(2024, 7, 1, 12, 0, 0, 123456, tzinfo=dt.timezone.utc)],
                              pa.timestamp("us", tz="America/New_York")),
        "seen": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5), dt.datetime(2024, 1, 2), None], pa.timestamp("ns")),
        "born": pa.array([dt.date(1990, 1, 2), None, dt.date(2000, 2, 29)]),
        "tags": pa.array([["fuel", "travel"], [], None], pa.list_(pa.string())),
        "address": pa.array([{"city": "Austin", "zip": "73301", "geo": {"lat": 30.27, "when": dt.date(2020, 1, 1)}},
                             {"city": "Boston", "zip": None, "geo": None}, None]),
        "limit": pa.array([Decimal("1234.50"), Decimal("0.10"), None], pa.decimal128(10, 2)),
        "big": pa.array([Decimal("12345678901234567.89"), Decimal("1"), Decimal("-2.5")], pa.decimal128(38, 2)),
        "whole": pa.array([Decimal("42"), None, Decimal("-7")], pa.decimal128(20, 0)),
        "visits": pa.array([3, None, 2**53 + 1], pa.int64()),
        "count": pa.array([1, 2, 3], pa.int32()),
        "ratio": pa.array([0.5, None, float("nan")]),
        "weight": pa.array([1e-7, 0.1, None], pa.float32()),  # float32's own digits, not 1.0000000116860974e-07
        "active": pa.array([True, None, False]),
        "span": pa.array([dt.timedelta(seconds=90), None, dt.timedelta(days=1)], pa.duration("s")),
        "prefs": pa.array([[("email", True)], None, []], pa.map_(pa.string(), pa.bool_())),
    })


def test_parquet_types_become_plain_json_values(tmp_path):
    path = tmp_path / "users.parquet"
    pq.write_table(typed_table(), path)
    rows = rows_of(path)
    assert rows[0] == {
        "user_id": "u1", "signed_up": "2024-03-01T04:30:00-05:00", "seen": "2024-01-02T03:04:05",
        "born": "1990-01-02", "tags": ["fuel", "travel"],
        "address": {"city": "Austin", "zip": "73301", "geo": {"lat": 30.27, "when": "2020-01-01"}},
        "limit": 1234.5, "big": "12345678901234567.89", "whole": 42, "visits": 3, "count": 1, "ratio": 0.5,
        "weight": 1e-07, "active": True, "span": "P0DT0H1M30S", "prefs": {"email": True}, "_row": 1, "_input_error": ""}
    assert rows[1] == {
        "user_id": "u2", "signed_up": None, "seen": "2024-01-02T00:00:00", "born": None, "tags": [],
        "address": {"city": "Boston", "zip": None, "geo": None}, "limit": 0.1, "big": 1.0, "whole": None,
        "visits": None, "count": 2, "ratio": None, "weight": 0.1, "active": None, "span": None, "prefs": None,
        "_row": 2, "_input_error": ""}
    assert rows[2]["signed_up"] == "2024-07-01T08:00:00.123456-04:00"  # summer time: the zone's own offset
    assert rows[2]["visits"] == 2**53 + 1 and type(rows[2]["visits"]) is int  # not a float, not rounded
    assert rows[2]["big"] == -2.5 and rows[2]["ratio"] is None and rows[2]["prefs"] == {}
    for row in rows:
        assert json.loads(json.dumps(row, allow_nan=False)) == row  # strict JSON, no NaN


def test_a_value_without_a_json_form_fails_only_its_row_naming_file_row_and_column(tmp_path):
    path = tmp_path / "users.parquet"
    pq.write_table(pa.table({
        "user_id": ["u1", "u2", "u3", "u4"],
        "score": [1.5, float("inf"), 2.0, 3.0],
        "blob": pa.array([b"plain", None, b"\xff\xfe", b"ok"]),
        "labels": pa.array([[("a", 1)], None, None, [("k", 1), ("k", 2)]], pa.map_(pa.string(), pa.int64())),
    }), path)
    rows = rows_of(path, size=3)
    assert [r["_input_error"] for r in rows] == [
        "",
        "users.parquet row 2: column score: inf is not a JSON number",
        "users.parquet row 3: column blob: binary value is not UTF-8 text (byte 0xff at offset 0)",
        "users.parquet row 4: column labels: a map with a repeated key ('k')",
    ]
    assert rows[0]["blob"] == "plain" and rows[0]["labels"] == {"a": 1} and rows[3]["score"] == 3.0


def test_jsonl_values_keep_their_json_types(tmp_path):
    path = tmp_path / "users.jsonl"
    path.write_text('{"user_id": "u1", "visits": 3, "tags": ["a"], "address": {"city": "Rome"}, "spend": 1.5}\n'
                    '{"user_id": "u2", "visits": null, "spend": NaN}\n'
                    '{"user_id": "u3", "visits": 12, "spend": Infinity}\n')
    rows = rows_of(path)
    assert rows[0] == {"user_id": "u1", "visits": 3, "tags": ["a"], "address": {"city": "Rome"}, "spend": 1.5,
                       "_row": 1, "_input_error": ""}
    assert rows[1] == {"user_id": "u2", "visits": None, "tags": None, "address": None, "spend": None,
                       "_row": 2, "_input_error": ""}
    assert type(rows[2]["visits"]) is int and rows[2]["spend"] is None
    assert rows[2]["_input_error"] == "users.jsonl row 3 (line 3): column spend: inf is not a JSON number"


@pytest.mark.parametrize(("value", "expected"), [
    (Decimal("12.00"), 12.0), (Decimal("1E+3"), 1000), (Decimal("0.1"), 0.1),
    (Decimal("0.12345678901234567890"), "0.12345678901234567890"), (Decimal("NaN"), None),
])
def test_decimals_are_numbers_unless_a_float_would_change_them(value, expected):
    assert json_value(value) == expected and type(json_value(value)) is type(expected)


def test_a_cp1252_csv_reads_right_with_its_encoding_and_says_how_without(tmp_path):
    path = tmp_path / "users.csv"
    path.write_bytes("user_id,city,note\nu1,Montréal,\"5 €\nà payer\"\nu2,Zürich,ok\n".encode("cp1252"))
    job = Job("unit", echo, (), (), str(tmp_path / "work"), key_column="user_id")
    chunks = stage_input(job, path, RunOptions(encoding="cp1252"))
    frame = pd.concat([c.frame() for c in chunks])
    assert frame.city.tolist() == ["Montréal", "Zürich"] and frame.note.tolist() == ["5 €\nà payer", "ok"]
    assert (frame._input_error == "").all()
    errors = [row["_input_error"] for row in rows_of(path)]
    assert errors[0] == ("users.csv row 1 (line 3): column city: not UTF-8 (byte 0xe9 at line 2); give the "
                         "file's encoding, e.g. --encoding cp1252; column note: not UTF-8 (byte 0x80 at line 2); "
                         "give the file's encoding, e.g. --encoding cp1252")
    assert errors[1].startswith("users.csv row 2 (line 4): column city: not UTF-8 (byte 0xfc at line 4)")
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"user_id": "u1", "city": "Montréal"}\n'.encode("latin-1"))
    assert rows_of(latin, encoding="latin-1")[0]["city"] == "Montréal"
    assert rows_of(latin)[0]["_input_error"] == ("latin.jsonl row 1 (line 1): not UTF-8 (byte 0xe9 at line 1); "
                                                 "give the file's encoding, e.g. --encoding cp1252")
    with pytest.raises(InputError, match="unknown encoding 'latin-9x'"):
        rows_of(path, encoding="latin-9x")


def test_floats_are_written_positional_with_every_digit(tmp_path):
    assert [plain_float(v) for v in (3.36e-05, 1200.0, 0.1 + 0.2, 1e22, -2.5e-10, 123.456)] == [
        "0.0000336", "1200.0", "0.30000000000000004", "10000000000000000000000.0", "-0.00000000025", "123.456"]
    frame = pd.DataFrame({"id": ["a", "b", "c"], "cost_usd": [3.36e-05, None, 1.5e-07],
                          "mixed": pd.Series([4.2e-06, "text", None], dtype=object)})
    writer = OutputWriter(tmp_path / "out.csv")
    writer.write(frame)
    writer.close()
    assert (tmp_path / "out.csv").read_text().splitlines() == [
        "id,cost_usd,mixed", "a,0.0000336,0.0000042", "b,,text", "c,0.00000015,"]
    back = pd.read_csv(tmp_path / "out.csv")
    assert back.cost_usd[0] == 3.36e-05 and back.cost_usd[2] == 1.5e-07  # not one digit lost
    exact = [1e-12, 0.1234567890123, 2.0**60 + 2**8, float("nan")]
    writer = OutputWriter(tmp_path / "out.jsonl")
    writer.write(pd.DataFrame({"value": exact}))
    writer.close()
    assert [json.loads(line)["value"] for line in (tmp_path / "out.jsonl").read_text().splitlines()] == \
        [*exact[:3], None]  # pandas' own JSON would give 0.0, 0.123456789 and 1.152921505e+18


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl", ".xlsx"])
def test_typed_input_is_written_back_with_ints_as_ints(tmp_path, suffix):
    source = tmp_path / "users.parquet"
    pq.write_table(typed_table(), source)
    frame = pd.concat(list(read_chunks(source, 2)), ignore_index=True).drop(columns=["_row", "_input_error"])
    out = tmp_path / f"out{suffix}"
    writer = OutputWriter(out)
    writer.write(frame.iloc[:2])
    writer.write(frame.iloc[2:])
    writer.close()
    if suffix == ".parquet":
        table = pq.read_table(out)
        assert table.schema.field("visits").type == pa.int64() and table.schema.field("whole").type == pa.int64()
        assert table.column("visits").to_pylist() == [3, None, 2**53 + 1]
        assert json.loads(table.column("address").to_pylist()[0])["geo"] == {"lat": 30.27, "when": "2020-01-01"}
    elif suffix == ".jsonl":
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert [line["visits"] for line in lines] == [3, None, 2**53 + 1]
        assert lines[0]["tags"] == ["fuel", "travel"] and lines[1]["address"]["city"] == "Boston"
    else:
        back = (pd.read_csv(out, dtype=str, keep_default_na=False) if suffix == ".csv"
                else pd.read_excel(out, dtype=str, keep_default_na=False))
        assert back.visits.tolist() == ["3", "", str(2**53 + 1)]
        assert back.tags.tolist() == ['["fuel", "travel"]', "[]", ""]
        assert back.signed_up[0] == "2024-03-01T04:30:00-05:00" and back.prefs[0] == '{"email": true}'


def test_a_parquet_output_column_that_changes_type_is_named(tmp_path):
    source = tmp_path / "users.jsonl"
    source.write_text('{"id": 1, "big": 123456789012345678901234567890}\n{"id": 2, "big": null}\n'
                      '{"id": "three", "big": null}\n')
    chunks = [c.drop(columns=["_row", "_input_error"]) for c in read_chunks(source, 2)]
    writer = OutputWriter(tmp_path / "big.parquet")
    writer.write(chunks[0])
    writer.close()
    assert pq.read_table(tmp_path / "big.parquet").to_pylist() == [  # past 64 bits: text, every digit
        {"id": 1, "big": "123456789012345678901234567890"}, {"id": 2, "big": None}]
    writer = OutputWriter(tmp_path / "out.parquet")
    writer.write(chunks[0])
    with pytest.raises(ValueError, match=r"out.parquet: column id held int64 values in the first rows, then string "
                                         r"\(.*'three'.*\); write .csv or .jsonl output"):
        writer.write(chunks[1])
