"""The tree and the run state in the bucket, the work on an isolated Dask cluster (tests/isolated_cluster.py):
the workers share nothing with the flow but the network, have no AWS credentials in their environment
and reach moto's S3 server (tests/s3_server.py) with the Prefect block that BATCHFLOWS_STORAGE_BLOCK names,
which each of them loads from the Prefect API."""
import pandas as pd
import pytest
from conftest import read_table, write_config
from s3_server import without_credentials
from test_bucket_metadata import by_relative_path, media_tree

from flows.card_recommendations import card_recommendations
from flows.file_metadata import file_metadata
from tasks.samples.tables import write_users

BUCKET = "cluster-state"


@pytest.fixture(scope="module")
def block_workers(s3_server_process, isolated_cluster):
    """This process and the cluster's workers (restarted) with no AWS credentials, only the block's name;
    the workers restarted again with the usual environment afterwards."""
    user = s3_server_process.user("cluster-workers", ["s3:*"], BUCKET)
    block = s3_server_process.save_block("moto-cluster-workers", user)
    with pytest.MonkeyPatch.context() as patch:
        without_credentials(patch)
        patch.setenv("BATCHFLOWS_STORAGE_BLOCK", block)
        restart_workers(isolated_cluster)
        yield s3_server_process
    restart_workers(isolated_cluster)


def restart_workers(cluster) -> None:
    for name in list(cluster.workers):
        cluster.restart_worker(name)


@pytest.fixture
def bucket_run(block_workers, fresh_isolated_cluster):
    """A fresh bucket for this test; s3fs connections of earlier tests forgotten."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    block_workers.bucket(BUCKET)
    yield block_workers
    s3fs.S3FileSystem.clear_instance_cache()


def state_in_the_bucket(monkeypatch, workspace) -> None:
    """The work store in the bucket; the flow's local disk (SQLite stores, staged chunks) a fresh folder."""
    monkeypatch.setenv("BATCHFLOWS_WORK_DIR", f"s3://{BUCKET}/work")
    monkeypatch.setenv("BATCHFLOWS_LOCAL_DIR", str(workspace / "flow-disk"))


def ran_on_the_workers(figures, cluster) -> bool:
    hosts = {worker.split(":")[0] for worker in figures["chunks_per_worker"]}
    return hosts == {worker.hostname for worker in cluster.workers.values()}


def test_file_metadata_of_a_bucket_prefix_on_the_cluster_equals_the_local_tree(workspace, bucket_run, monkeypatch,
                                                                               fresh_isolated_cluster):
    from test_file_metadata import read_output

    s3, cluster = bucket_run, fresh_isolated_cluster
    root = workspace / "tree"  # on this machine only: each worker sees an empty tmpfs here
    media_tree(root)
    files = sorted(path for path in root.rglob("*") if path.is_file())
    for path in files:
        s3.upload(path, BUCKET, f"collection/{path.relative_to(root)}")
    local = file_metadata(str(root), str(workspace / "local.jsonl"), chunk_size=10)
    state_in_the_bucket(monkeypatch, workspace)
    remote = file_metadata(f"s3://{BUCKET}/collection", f"s3://{BUCKET}/out/metadata.jsonl", chunk_size=10,
                           runner=cluster.address)
    assert remote["rows"] == local["rows"] == len(files) and remote["requests"] == len(files)
    assert ran_on_the_workers(remote, cluster)
    assert s3.keys(BUCKET, "work/journals/")  # the run state is in the bucket
    (workspace / "remote.jsonl").write_bytes(s3.fetch(BUCKET, "out/metadata.jsonl"))
    in_bucket = read_output(workspace / "remote.jsonl")
    pd.testing.assert_frame_equal(by_relative_path(in_bucket, f"s3://{BUCKET}/collection/"),
                                  by_relative_path(read_output(workspace / "local.jsonl"), f"{root}/"))


def test_card_recommendations_from_parquet_to_csv_in_the_bucket_on_the_cluster(workspace, emulator, bucket_run,
                                                                               monkeypatch, fresh_isolated_cluster):
    s3, cluster = bucket_run, fresh_isolated_cluster
    users = workspace / "users.parquet"
    write_users(users, 600)
    source = s3.upload(users, BUCKET, "in/users.parquet")
    config = write_config(workspace / "config.json", emulator.url, chunk_size=50)
    card_recommendations(str(users), str(workspace / "local.csv"), str(config))
    emulator.reset()
    state_in_the_bucket(monkeypatch, workspace)
    figures = card_recommendations(source, f"s3://{BUCKET}/out/recommendations.csv", str(config),
                                   runner=cluster.address)
    assert figures["rows"] == figures["ok"] == 600 and emulator.stats("cards")["ok_keys"] == 600
    assert ran_on_the_workers(figures, cluster)
    assert s3.keys(BUCKET, "work/journals/")
    (workspace / "bucket.csv").write_bytes(s3.fetch(BUCKET, "out/recommendations.csv"))
    pd.testing.assert_frame_equal(read_table(workspace / "bucket.csv"), read_table(workspace / "local.csv"))
