"""The brake's rules, the failed-fraction check and the attempts a row's record counts, without Prefect."""

import pytest

from tasks.engine.brake import CHUNK_MIN_ROWS, Brake
from tasks.engine.chunk import failure_record
from tasks.engine.journal import Reasons
from tasks.engine.outcomes import GaveUp, RowError, TooManyFailed
from tasks.engine.run import check_failed_fraction

PAGE = "unexpected answer from the API: '<html><body>It works!</body></html>'"


def failed(row: int, error: str = PAGE, retryable: bool = False, bad_input: bool = False) -> dict:
    record = {"row": row, "status": "failed", "error": error, "retryable": retryable}
    return {**record, "bad_input": True} if bad_input else record


def ok(row: int) -> dict:
    return {"row": row, "status": "ok", "error": "", "result": {}}


def test_the_first_rows_all_failing_for_good_stop_the_run_with_one_line():
    brake = Brake(100)
    brake.sent("a", 200)
    for row in range(1, 100):
        brake.observe("a", failed(row, f"HTTP 422: user {row} unknown" if row % 10 == 0 else PAGE))
        assert brake.verdict == "" and brake.rows_to_decide() == 100 - row
    brake.observe("a", failed(100))
    assert brake.verdict == (
        "stopped after the first 100 rows sent all failed: " + PAGE + " (91 rows; 1 other reason(s) for 9 rows)"
        " — the answers are web pages, not the API's: check the base URL")
    assert "\n" not in brake.verdict
    assert [record["row"] for _, record in brake.culprits] == list(range(1, 101))


@pytest.mark.parametrize("disarming", [ok(5), failed(5, "gave up after 6 attempts: HTTP 503", retryable=True),
                                       {"row": 5, "status": "partial", "error": "only half", "result": {}}])
def test_a_row_that_did_not_fail_for_good_settles_the_first_rows(disarming):
    brake = Brake(10)
    for row in range(1, 5):
        brake.observe("a", failed(row))
    brake.observe("a", disarming)
    for row in range(6, 40):
        brake.observe("a", failed(row, f"HTTP 404: no user {row}"))
    assert brake.verdict == "" and brake.rows_to_decide() == 0


def test_bad_input_counts_neither_for_nor_against_the_brake():
    brake = Brake(5)
    brake.sent("a", 300)
    for row in range(1, 300):  # a file of bad rows: the user's data, not the API failing
        brake.observe("a", failed(row, f"in.csv row {row}, column monthly_spend: 'lots' is not a number",
                                  bad_input=True))
    assert brake.verdict == "" and brake.rows_to_decide() == 5
    for row in range(300, 305):
        brake.observe("b", failed(row))
    assert brake.verdict.startswith("stopped after the first 5 rows sent all failed: unexpected answer")


def test_one_reason_for_every_row_of_a_chunk_stops_a_run_that_went_well_until_then():
    brake = Brake(100)
    for row in range(1, 101):
        brake.observe("a", ok(row))
    brake.sent("b", 30)
    brake.sent("c", 30)
    for row in range(101, 131):
        brake.observe("b", failed(row, f"HTTP 500 on user {row}" if row == 110 else f"gave up after 6 attempts: "
                                  f"connection error: ServerDisconnectedError ({row})", retryable=row != 110))
        brake.observe("c", failed(row + 100, bad_input=row % 3 == 0))
    assert brake.verdict.startswith(f"stopped after all 20 rows sent of a chunk (rows 201-230) failed the same way: "
                                    f"{PAGE}")
    assert len(brake.culprits) == 20 and all(not record.get("bad_input") for _, record in brake.culprits)


def test_a_small_or_mixed_chunk_does_not_stop_the_run():
    brake = Brake(1)
    brake.observe("a", ok(1))
    brake.sent("small", CHUNK_MIN_ROWS - 1)
    for row in range(CHUNK_MIN_ROWS - 1):
        brake.observe("small", failed(row))
    brake.sent("mixed", 50)
    for row in range(49):
        brake.observe("mixed", failed(row))
    brake.observe("mixed", ok(50))
    assert brake.verdict == ""


def test_no_brake_when_turned_off():
    brake = Brake(0)
    brake.sent("a", 500)
    for row in range(500):
        brake.observe("a", failed(row))
    assert brake.verdict == "" and brake.rows_to_decide() == 0


def test_a_call_that_gave_up_counts_the_attempts_of_the_rows_earlier_passes():
    error = GaveUp("connection error: ServerDisconnectedError", 6, status=None)
    first = failure_record(7, error, {"_attempts": 0, "_passes": 0}, "in.csv")
    assert first == {"row": 7, "status": "failed", "retryable": True, "attempts": 6, "passes": 1,
                     "error": "gave up after 6 attempts: connection error: ServerDisconnectedError"}
    second = failure_record(7, error, {"_attempts": first["attempts"], "_passes": first["passes"]}, "in.csv")
    assert second["error"] == "gave up after 12 attempts over 2 passes: connection error: ServerDisconnectedError"
    bad = failure_record(8, RowError("column x: 'a' is not a number", bad_input=True), {}, "in.csv")
    assert bad == {"row": 8, "status": "failed", "retryable": False, "bad_input": True,
                   "error": "in.csv row 8, column x: 'a' is not a number"}


def test_more_failed_rows_than_the_run_accepts_fail_it_in_one_line():
    figures = {"rows": 2000, "failed": 1400, "output": "/data/out.csv"}
    reasons = Reasons()
    for row in range(1, 1401):
        reasons.add(f"users.csv row {row}, column monthly_spend: 'lots' is not a number")
    with pytest.raises(TooManyFailed) as raised:
        check_failed_fraction(figures, reasons, 0.5)
    assert str(raised.value) == ("1,400 of 2,000 rows failed (70%, more than the 50% a run accepts); most common "
                                 "problem (1,400 rows): users.csv row 1, column monthly_spend: 'lots' is not a "
                                 "number; output written to /data/out.csv")
    assert raised.value.figures is figures
    check_failed_fraction(figures, reasons, 0.7)  # 70 % is not more than 70 %
    check_failed_fraction(figures, reasons, None)
    check_failed_fraction({"rows": 0, "failed": 0, "output": "x"}, Reasons(), 0.5)
