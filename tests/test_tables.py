"""Readers stream chunks with per-row input errors; writers keep order in every format."""
import pandas as pd
import pytest
from openpyxl import Workbook

from tasks.engine.tables import InputError, OutputWriter, count_rows, read_chunks


def rows_of(path, size=2, **kwargs):
    return pd.concat(list(read_chunks(path, size, **kwargs)), ignore_index=True)


def test_csv_ragged_row_and_bad_bytes_become_row_errors(tmp_path):
    path = tmp_path / "users.csv"
    path.write_bytes(b"user_id,city\nu1,Austin\nu2,Boston,extra\nu3,Montr\xe9al\n\nu4,Denver\n")
    frame = rows_of(path, required=("user_id",))
    assert list(frame.user_id) == ["u1", "u2", "u3", "u4"]
    assert list(frame._row) == [1, 2, 3, 4]
    errors = list(frame._input_error)
    assert errors[0] == "" and errors[3] == ""
    assert errors[1] == "users.csv row 2 (line 3): has 3 fields, the header has 2"
    assert errors[2] == ("users.csv row 3 (line 4): column city: not UTF-8 (byte 0xe9 at line 4); "
                         "give the file's encoding, e.g. --encoding cp1252")
    assert frame.city[2] == "Montr\ufffdal"


def test_semicolon_csv_and_whole_file_problems(tmp_path):
    semi = tmp_path / "semi.csv"
    semi.write_text("user_id;city\nu1;Austin\n")
    assert rows_of(semi).city.tolist() == ["Austin"]
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InputError, match="empty.csv: the file is empty"):
        rows_of(empty)
    with pytest.raises(InputError, match=r"semi.csv: missing column\(s\) \['monthly_spend'\]; found \['user_id', 'city'\]"):
        rows_of(semi, required=("monthly_spend",))
    with pytest.raises(InputError, match="no such file"):
        rows_of(tmp_path / "nope.csv")
    twice = tmp_path / "twice.csv"
    twice.write_text("a,a\n1,2\n")
    with pytest.raises(InputError, match="column 'a' appears twice"):
        rows_of(twice)


def test_xlsx_finds_the_sheet_with_the_required_columns(tmp_path):
    book = Workbook()
    book.active.title = "Notes"
    book.active.append(["read me first"])
    data = book.create_sheet("Users")
    data.append([None])
    data.append(["user_id", "monthly_spend"])
    data.append(["u1", 1200.0])
    data.append(["u2", 99.5])
    path = tmp_path / "users.xlsx"
    book.save(path)
    frame = rows_of(path, required=("user_id",))
    assert frame[["user_id", "monthly_spend"]].values.tolist() == [["u1", "1200"], ["u2", "99.5"]]
    with pytest.raises(InputError, match=r"no sheet has the column\(s\) card in its first 20 rows; headers found: .*'Notes'"):
        rows_of(path, required=("card",))
    with pytest.raises(InputError, match=r"no sheet 'Usres'; sheets are \['Notes', 'Users'\]"):
        rows_of(path, sheet="Usres")


def test_broken_xlsx_is_a_clear_error(tmp_path):
    path = tmp_path / "users.xlsx"
    path.write_bytes(b"this is no spreadsheet")
    with pytest.raises(InputError, match="users.xlsx: not a readable xlsx file"):
        count_rows(path)
    with pytest.raises(InputError, match="users.xlsx: not a readable xlsx file"):
        rows_of(path)


def test_jsonl_bad_line_is_a_row_error_and_every_chunk_has_every_key(tmp_path):
    path = tmp_path / "users.jsonl"
    path.write_text('{"user_id": "u1", "tags": [1]}\nnot json\n{"user_id": "u3", "city": "Rome"}\n')
    chunks = list(read_chunks(path, 2))
    assert [list(c.columns) for c in chunks] == [["user_id", "tags", "city", "_row", "_input_error"]] * 2
    frame = pd.concat(chunks, ignore_index=True)
    assert frame.user_id.tolist()[0] == "u1" and frame.tags[0] == [1] and frame.city[2] == "Rome"
    assert frame._input_error[1].startswith("users.jsonl row 2 (line 2): invalid JSON")


def test_header_only_file_gives_one_empty_chunk_with_the_columns(tmp_path):
    path = tmp_path / "users.csv"
    path.write_text("user_id,city\n")
    chunks = list(read_chunks(path, 10, required=("user_id",)))
    assert len(chunks) == 1 and chunks[0].empty and list(chunks[0].columns)[:2] == ["user_id", "city"]


@pytest.mark.parametrize("suffix", [".csv", ".xlsx", ".parquet", ".jsonl"])
def test_writers_keep_order_across_chunks(tmp_path, suffix):
    path = tmp_path / f"out{suffix}"
    writer = OutputWriter(path)
    writer.write(pd.DataFrame({"id": ["a", "b"], "value": [1.5, None]}))
    writer.write(pd.DataFrame({"id": ["c"], "value": [2.0]}))
    assert writer.close() == path
    back = rows_of(path, size=10)
    assert back.id.tolist() == ["a", "b", "c"]
    assert not (tmp_path / f".out{suffix}.partial").exists()


def test_a_cell_longer_than_the_csv_modules_default_limit_is_read(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("id,notes\n1," + "x" * 300_000 + "\n2,short\n")
    frame = next(read_chunks(path, 10))
    assert frame.notes.str.len().tolist() == [300_000, 5] and (frame._input_error == "").all()
