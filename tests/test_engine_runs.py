"""The chunk engine inside a real flow run: a failure of our own machinery, or rows failing
systematically, fail the run loudly after the output is written with every row once."""
import pandas as pd
from prefect import flow

from tasks.engine.job import Job, RunOptions
from tasks.engine.outcomes import MachineryError, RowError
from tasks.engine.run import run_job


async def breaks_on_three(row, clients):
    if row["value"] == "3":
        raise MachineryError("the store is locked")
    return {"double": int(row["value"]) * 2}


@flow(name="engine-machinery")
def machinery_run(input_path: str, output_path: str, work_dir: str) -> dict:
    job = Job("breaks", breaks_on_three, ("double",), (), work_dir, concurrency=1, column_types={"double": "Int64"})
    return run_job(job, input_path, output_path, RunOptions(chunk_size=2))


def test_a_chunk_that_keeps_failing_for_our_own_reasons_fails_the_run(tmp_path):
    source = tmp_path / "in.csv"
    pd.DataFrame({"value": ["1", "2", "3", "4", "5"]}).to_csv(source, index=False)
    state = machinery_run(str(source), str(tmp_path / "out.csv"), str(tmp_path / "work"), return_state=True)
    assert state.is_failed()
    assert "1 chunk(s) failed, not for a reason of their rows (chunk 1: MachineryError: the store is locked)" \
        in state.message
    out = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert out.value.tolist() == ["1", "2", "3", "4", "5"]  # nothing lost: every row, with a result or a reason
    assert out.status.tolist() == ["ok", "ok", "failed", "failed", "ok"]
    assert out.error[2] == out.error[3] == "not processed: MachineryError: the store is locked"


async def answers_a_web_page(row, clients):
    raise RowError("unexpected answer from the API: '<html>…'")


@flow(name="engine-all-failing")
def all_failing_run(input_path: str, output_path: str, work_dir: str, brake_rows: int,
                    max_failed_fraction: float | None) -> dict:
    job = Job("all-failing", answers_a_web_page, ("double",), (), work_dir, concurrency=4)
    return run_job(job, input_path, output_path, RunOptions(chunk_size=10, brake_rows=brake_rows,
                                                            max_failed_fraction=max_failed_fraction))


def test_the_brake_sends_only_the_probe_and_both_judgements_can_be_turned_off(tmp_path):
    source = tmp_path / "in.csv"
    pd.DataFrame({"value": [str(n) for n in range(1, 201)]}).to_csv(source, index=False)
    state = all_failing_run(str(source), str(tmp_path / "out.csv"), str(tmp_path / "work"), 25, 0.5,
                            return_state=True)
    assert state.is_failed() and state.message.endswith(
        "stopped after the first 25 rows sent all failed: unexpected answer from the API: '<html>…' — the answers "
        "are web pages, not the API's: check the base URL")
    out = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert (out.error[:25] == "unexpected answer from the API: '<html>…'").all()  # probes: chunks 0 and 1, 5 rows of chunk 2
    assert out.error[25:].str.startswith("not processed: stopped after the first 25 rows").all()

    figures = all_failing_run(str(source), str(tmp_path / "off.csv"), str(tmp_path / "work-off"), 0, None)
    assert figures["failed"] == 200 and figures["requests"] == 0  # every row tried, the run Completed
