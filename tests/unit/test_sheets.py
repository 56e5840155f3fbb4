"""xlsx headers: merged and blank header cells get names (never a dropped column), a header under
title rows is found, and what cannot be found or named is an error naming the sheet and cell."""
import pandas as pd
import pytest
from openpyxl import Workbook

from tasks.engine.tables import InputError, read_chunks


def rows_of(path, **kwargs) -> pd.DataFrame:
    return pd.concat(list(read_chunks(path, 3, **kwargs)), ignore_index=True)


def report_book(path, data_rows=3):
    """A report: a merged title in A1, a date in A2, the header on row 4 with a merged `Address`
    (B4:C4) and a blank cell over data (E4)."""
    book = Workbook()
    sheet = book.active
    sheet.title = "Users"
    sheet["A1"] = "Monthly card report"
    sheet.merge_cells("A1:F1")
    sheet["A2"] = "March 2026"
    sheet.append([])
    sheet.append(["user_id", "Address", None, "monthly_spend", None, "city"])
    sheet.merge_cells("B4:C4")
    for n in range(1, data_rows + 1):
        sheet.append([f"u{n}", f"{n} Main St", "Apt 2", 100.5 * n, f"note {n}", "Austin"])
    book.save(path)
    return path


def test_a_header_under_title_rows_with_merged_and_blank_cells_keeps_every_column(tmp_path):
    path = report_book(tmp_path / "report.xlsx")
    for required in (("user_id",), ()):  # with no required column the one-cell title rows are skipped too
        frame = rows_of(path, required=required)
        assert list(frame.columns) == ["user_id", "Address", "Address_2", "monthly_spend", "column_5", "city",
                                       "_row", "_input_error"]
        assert frame.iloc[1, :6].tolist() == ["u2", "2 Main St", "Apt 2", "201", "note 2", "Austin"]
        assert frame._row.tolist() == [1, 2, 3] and (frame._input_error == "").all()


def test_a_merged_header_at_the_right_edge_and_a_vertical_merge(tmp_path):
    book = Workbook()
    sheet = book.active
    sheet.append(["Customer", "Contact", None, None])
    sheet.append([None, "phone", "email", "Address"])
    sheet.merge_cells("A1:A2")  # `Customer` spans the two header rows
    sheet.merge_cells("D2:E2")  # the second column of the merge is the last column
    sheet.append(["Ann", "555-0100", "ann@example.com", "1 Main St", "Rome"])
    path = tmp_path / "contacts.xlsx"
    book.save(path)
    frame = rows_of(path, required=("email",))
    assert list(frame.columns)[:5] == ["Customer", "phone", "email", "Address", "Address_2"]
    assert frame.iloc[0, :5].tolist() == ["Ann", "555-0100", "ann@example.com", "1 Main St", "Rome"]


def test_a_value_right_of_every_header_fails_its_row_naming_the_cell(tmp_path):
    path = tmp_path / "report.xlsx"
    book = Workbook()
    sheet = book.active
    sheet.title = "Users"
    sheet.append(["user_id", "city"])
    for n in range(1, 31):
        sheet.append([f"u{n}", "Austin"])
    sheet.append(["u31", "Boston", None, "left here by hand"])  # beyond the first 20 data rows
    book.save(path)
    frame = rows_of(path, required=("user_id",))
    assert list(frame.columns) == ["user_id", "city", "_row", "_input_error"]
    assert frame._input_error.tolist()[:30] == [""] * 30
    assert frame._input_error[30] == ("report.xlsx sheet 'Users' row 31 (sheet row 32): cell D32 has a value but "
                                      "column D has no header (row 1); give it one")


def test_a_sheet_without_the_required_column_is_named_in_the_error(tmp_path):
    path = report_book(tmp_path / "report.xlsx")
    with pytest.raises(InputError, match=r"report.xlsx sheet 'Users': no row in the first 20 has the column\(s\) "
                                         r"email; header found at row 4: \['user_id', 'Address', '', "):
        rows_of(path, required=("email",), sheet="Users")
    with pytest.raises(InputError, match=r"no sheet has the column\(s\) email in its first 20 rows; headers found: "
                                         r"\{'Users': \"row 4: \['user_id', 'Address'"):
        rows_of(path, required=("email",))
    book = Workbook()
    book.active.title = "Users"
    for n in range(25):
        book.active.append([f"title line {n}"])
    book.active.append(["user_id", "city"])
    book.save(path)
    with pytest.raises(InputError, match=r"sheet 'Users': no row in the first 20 has the column\(s\) user_id"):
        rows_of(path, required=("user_id",), sheet="Users")


def test_merged_names_that_repeat_a_column_are_an_error_not_a_silent_overwrite(tmp_path):
    book = Workbook()
    sheet = book.active
    sheet.append(["user_id", "Address", None, "Address_2"])
    sheet.merge_cells("B1:C1")
    sheet.append(["u1", "a", "b", "c"])
    path = tmp_path / "users.xlsx"
    book.save(path)
    with pytest.raises(InputError, match="sheet 'Sheet': column 'Address_2' appears twice in the header"):
        rows_of(path, required=("user_id",))


def test_merges_are_found_after_megabytes_of_rows(tmp_path):
    book = Workbook()
    sheet = book.active
    sheet.append(["user_id", "Address", None])
    sheet.merge_cells("B1:C1")  # written after the rows, past the first 1 MiB block of the sheet's XML
    for n in range(40_000):
        sheet.append([f"u{n}", f"{n} Main St", "Austin"])
    path = tmp_path / "big.xlsx"
    book.save(path)
    frame = pd.concat(list(read_chunks(path, 50_000, required=("user_id",))), ignore_index=True)
    assert list(frame.columns)[:3] == ["user_id", "Address", "Address_2"]
    assert len(frame) == 40_000 and frame.Address_2.eq("Austin").all()


def test_a_merge_past_the_last_column_with_data_in_the_first_rows_is_named(tmp_path):
    book = Workbook()
    sheet = book.active
    sheet.append(["user_id", "Phones"])
    sheet.merge_cells("B1:C1")
    for n in range(30):
        sheet.append([f"u{n}", f"555-01{n:02d}"])
    sheet.append(["u30", "555-0130", "555-0199"])  # the merge's second column is used only here
    path = tmp_path / "users.xlsx"
    book.save(path)
    frame = rows_of(path, required=("user_id",))
    assert list(frame.columns)[:3] == ["user_id", "Phones", "Phones_2"]
    assert frame.Phones_2.tolist()[-2:] == ["", "555-0199"] and (frame._input_error == "").all()
