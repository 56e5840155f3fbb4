"""The chunk engine inside a real flow run: a failure of our own machinery fails the run loudly,
after the output is written with every row once."""
import pandas as pd
from prefect import flow

from tasks.engine.job import Job, RunOptions
from tasks.engine.outcomes import MachineryError
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
