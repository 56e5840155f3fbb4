"""Duplicate book requests: normalisation, hand-made hard cases, batch duplicates, labelled data."""
import pandas as pd
import pytest

from tasks.apis.dedupe import PAIR_COLUMNS, check_history_columns, find_duplicates, normalise_address, normalise_name
from tasks.samples.book_requests import evaluate, history_frame, new_requests_frame


@pytest.fixture(scope="module", autouse=True)
def prefect_server():
    """Overrides the session's Prefect server fixture: these tests use no Prefect."""
    yield None


HISTORY = pd.DataFrame([
    ("H1", "John Smith", "123 North Main Street, Apt 4, Springfield, IL 62704", "+12175550101"),
    ("H2", "María García-López", "77 Oak Avenue, Austin, TX 78701", "+15125550102"),
    ("H3", "Mary Smith", "123 North Main Street, Apt 4, Springfield, IL 62704", "+12175550101"),
    ("H4", "Robert Brown", "500 Elm Road, Denver, CO 80203", None),
    ("H5", "Chen Wei", "9 Lake Drive, Seattle, WA 98101", "+12065550105"),
], columns=["request_id", "name", "address", "phone_e164"])


def best(pairs: pd.DataFrame) -> dict[int, tuple[str, object]]:
    chosen = pairs[pairs["best"]]
    return {row: (kind, matched) for row, kind, matched in zip(chosen["row"], chosen["kind"], chosen["matched_id"])}


def test_normalise():
    assert normalise_name("Dr. José  GARCÍA-López") == "jose garcia lopez"
    assert normalise_name("O'Brien, Mary A.") == "obrien mary"
    assert normalise_name(None) == ""
    assert normalise_address("123 North Main Street, Apt. #4, Springfield, Illinois 62704") == \
        "123 n main st apt 4 springfield il 62704"
    assert normalise_address("9 Washington Ln, Spokane, Washington") == "9 washington ln spokane wa"


def test_typos_abbreviations_and_swapped_names_match_the_right_request():
    new = pd.DataFrame([
        ("Smith, Jon", "123 N Main St #4 Springfield IL", None),               # typo, swapped, abbreviations
        ("MARIA GARCIA LOPEZ", "77 Oak Ave., Austin, Texas", "+15125550102"),   # case, accents, state name
        ("Robert Brwn", "500 Elm Rd Denver CO 80203", "+13035550000"),           # typo, other phone
        ("wei chen", "9 Lake Dr, Seattle WA", ""),                               # swapped, missing zip/phone
        ("Mray Smith", "123 North Main Street Apartment 4, Springfield 62704", "+12175550101"),  # transposition
    ], columns=["name", "address", "phone_e164"])
    pairs = find_duplicates(new, HISTORY)
    assert list(pairs.columns) == PAIR_COLUMNS
    assert best(pairs) == {1: ("history", "H1"), 2: ("history", "H2"), 3: ("history", "H4"),
                           4: ("history", "H5"), 5: ("history", "H3")}
    first = pairs[pairs["best"] & (pairs["row"] == 2)].iloc[0]
    assert first["phone_match"] and first["score"] == 1.0
    assert first["reason"] == "duplicate of history request H2 (name 100, address 100, same phone)"
    assert pairs["score"].between(0.9, 1).all() and pairs["name_score"].between(0, 100).all()


def test_hard_non_duplicates_are_not_flagged():
    new = pd.DataFrame([
        ("Peter Smith", "123 N Main St Apt 4, Springfield, IL 62704", "+12175550101"),  # family, same phone
        ("John Smith", "125 N Main St Apt 4, Springfield, IL 62704", None),              # neighbour
        ("John Smith", "123 N Main St Apt 5, Springfield, IL 62704", None),              # other flat
        ("John Smith", "123 N Main St, Portland, OR 97201", "+15035550199"),             # namesake elsewhere
        ("Robert Brown", "501 Elm Road, Denver, CO 80203", None),                         # neighbour
        ("Roberta Browning", "42 Pine St, Boston, MA 02110", None),                       # stranger
        (None, None, None),                                                               # empty row
    ], columns=["name", "address", "phone_e164"])
    assert find_duplicates(new, HISTORY).empty


def test_batch_duplicates_point_at_the_first_occurrence_and_row_numbers_come_from__row():
    new = pd.DataFrame({
        "_row": [11, 12, 13, 14, 15],
        "name": ["Alice Wong", "Bob Stone", "Wong, Alice", "alice wong", "Alice Wong"],
        "address": ["5 Cedar Ct, Boston, MA 02110", "6 Birch Ln, Boston MA", "5 Cedar Court Boston MA 02110",
                    "5 cedar ct boston", "7 Cedar Ct, Boston, MA 02110"],
        "phone_e164": [None, None, "+16175550111", None, None]})
    pairs = find_duplicates(new, HISTORY)
    assert best(pairs) == {13: ("batch", 11), 14: ("batch", 11)}
    assert set(pairs["kind"]) == {"batch"} and len(pairs) == 3  # 14 also matches 13, kept as a pair
    assert pairs.loc[pairs["best"] & (pairs["row"] == 13), "reason"].item() == \
        "duplicate of batch row 11 (name 100, address 100)"


def test_history_match_wins_over_batch_and_index_gives_row_numbers():
    new = pd.DataFrame({"name": ["Chen Wei", "Wei Chen"], "address": ["9 Lake Dr Seattle WA"] * 2},
                       index=[100, 101])
    pairs = find_duplicates(new, HISTORY[["request_id", "name", "address"]])  # history without phones
    assert best(pairs) == {101: ("history", "H5"), 102: ("history", "H5")}
    assert ((pairs["kind"] == "batch") & (pairs["row"] == 102) & (pairs["matched_id"] == 101)).sum() == 1


def test_missing_values_and_empty_frames():
    new = pd.DataFrame({"name": ["John Smith", None, float("nan"), ""], "address": [None, "1 Main St", "", None]})
    assert find_duplicates(new, HISTORY).empty
    empty = find_duplicates(new.iloc[:0], HISTORY.iloc[:0])
    assert empty.empty and list(empty.columns) == PAIR_COLUMNS


def test_history_column_check_names_expected_and_found_columns():
    check_history_columns(["request_id", "name", "address", "phone"], "h.csv")
    with pytest.raises(ValueError) as error:
        check_history_columns(["id", "name", "phone"], "history.csv")
    assert str(error.value) == ("history.csv: history file lacks column(s) request_id, address; expected "
                                "request_id, name, address (phone optional), found id, name, phone")
    with pytest.raises(ValueError, match="lacks column"):
        find_duplicates(pd.DataFrame({"name": []}), pd.DataFrame({"name": []}))


def test_generated_labelled_sample_precision_and_recall():
    history, people = history_frame(20_000, seed=5)
    new = new_requests_frame(2_000, history, people, dup_share=0.25, batch_dup_share=0.05, seed=6)
    pairs = find_duplicates(new, history)
    figures = evaluate(pairs, new, history)
    assert figures["expected"] >= 550
    assert figures["precision"] >= 0.97, figures
    assert figures["recall"] >= 0.95, figures
    assert (pairs["kind"] == "batch").sum() >= 90  # the batch-internal duplicates are found too
    assert pairs.groupby("row")["best"].sum().eq(1).all()
