"""Inputs, outputs and run state on object storage: a real S3-compatible server on loopback (moto's,
tests/s3_server.py), the card emulator, the real flows and CLI."""
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from conftest import kill_when, read_table, run_cli, write_config
from s3_server import without_credentials

from flows.card_recommendations import card_recommendations
from tasks.engine.storage import AtomicOutput
from tasks.engine.tables import OutputWriter
from tasks.samples.tables import write_users


def test_card_recommendations_from_parquet_in_the_bucket_to_csv_in_the_bucket(workspace, emulator, s3):
    s3.bucket("cards-in")
    users = workspace / "users.parquet"
    write_users(users, 1200)
    source = s3.upload(users, "cards-in", "users.parquet")
    config = write_config(workspace / "config.json", emulator.url, chunk_size=100, work_dir=str(workspace / "local-work"))
    card_recommendations(str(users), str(workspace / "local.csv"), str(config))
    emulator.reset()
    config = write_config(workspace / "config.json", emulator.url, chunk_size=100, work_dir=str(workspace / "s3-work"))
    figures = card_recommendations(source, "s3://cards-in/out/recommendations.csv", str(config))
    assert figures["rows"] == figures["ok"] == 1200 and figures["output"] == "s3://cards-in/out/recommendations.csv"
    assert emulator.stats("cards")["ok_keys"] == 1200  # the bucket run sent its own requests
    assert s3.fetch("cards-in", "out/recommendations.csv") == (workspace / "local.csv").read_bytes()
    assert sorted(s3.keys("cards-in")) == ["out/recommendations.csv", "users.parquet"]  # no temporary objects


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl", ".xlsx"])
def test_an_output_appears_in_the_bucket_only_when_complete(workspace, s3, suffix):
    s3.bucket("atomic-out")
    rows = pd.DataFrame({"user_id": [f"u{n:07d}" for n in range(120_000)], "note": ["x" * 150] * 120_000})
    writer, local = OutputWriter(f"s3://atomic-out/out/result{suffix}"), OutputWriter(workspace / f"result{suffix}")
    for start in range(0, len(rows), 20_000):
        writer.write(rows.iloc[start:start + 20_000])
        local.write(rows.iloc[start:start + 20_000])
    assert s3.keys("atomic-out") == []  # a CSV's 19 MB are more than one part: uploaded, yet nothing is visible
    writer.close()
    local.close()
    assert s3.keys("atomic-out") == [f"out/result{suffix}"]
    if suffix != ".xlsx":  # an xlsx holds its own timestamps
        assert s3.fetch("atomic-out", f"out/result{suffix}") == (workspace / f"result{suffix}").read_bytes()


def test_a_discarded_output_leaves_nothing_and_no_pending_upload(s3):
    s3.bucket("atomic-discard")
    output = AtomicOutput("s3://atomic-discard/out.csv")
    handle = output.text(encoding="utf-8", newline="")
    handle.write("user_id\n" + "u1\n" * 4_000_000)  # more than one part: an upload is under way
    output.discard()
    assert s3.keys("atomic-discard") == []
    assert s3.client().list_multipart_uploads(Bucket="atomic-discard").get("Uploads", []) == []


@pytest.fixture
def bucket_users(workspace, s3):
    s3.bucket("preflight")
    users = workspace / "users.csv"
    users.write_text("user_id,monthly_spend\nu1,10\nu2,20\n")
    return s3.upload(users, "preflight", "users.csv")


NO_CREDENTIALS = {"AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent"}


@pytest.mark.parametrize("case, source, output, expected", [
    ("missing bucket", "s3://no-such-bucket/users.csv", "out.csv",
     "s3://no-such-bucket/users.csv: no such bucket 'no-such-bucket'"),
    ("missing key", "s3://preflight/missing.csv", "out.csv", "s3://preflight/missing.csv: no such file"),
    ("output bucket missing", None, "s3://no-such-out-bucket/out.csv",
     "s3://no-such-out-bucket/out.csv: no such bucket 'no-such-out-bucket'; nothing was sent"),
    ("no credentials", None, "out.csv", "s3://preflight/users.csv: no credentials for s3://"),
    ("access denied to the input", None, "out.csv",
     "s3://preflight/users.csv: access denied (Forbidden); the credentials in use may not do this"),
    ("access denied to the output", None, "s3://preflight/out/result.csv",
     "s3://preflight/out/result.csv: access denied (Access Denied); the credentials in use may not do this; "
     "nothing was sent"),
])
def test_bucket_problems_stop_with_one_line_before_any_request(workspace, emulator, s3, bucket_users, monkeypatch,
                                                               case, source, output, expected):
    env = {}
    if case == "no credentials":
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
            monkeypatch.delenv(name, raising=False)
        env = NO_CREDENTIALS
    elif case.startswith("access denied"):
        env = s3.user(case.replace(" ", "-"), ["s3:GetObject", "s3:ListBucket"] if "output" in case else [], "preflight")
    config = write_config(workspace / "config.json", emulator.url)
    target = output if output.startswith("s3://") else str(workspace / output)
    if env.get("AWS_ACCESS_KEY_ID"):
        s3.enforce_auth(True)
    try:
        result = run_cli("card-recommendations", source or bucket_users, "-o", target, "--config", str(config), env=env)
    finally:
        s3.enforce_auth(False)
    errors = [line for line in result.stderr.splitlines() if line.startswith("batchflows: error:")]
    assert result.returncode == 1, result.stderr[-2000:]
    assert len(errors) == 1 and errors[0].removeprefix("batchflows: error: ").startswith(expected), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert emulator.stats("cards")["total"] == 0
    assert s3.keys("preflight") == ["users.csv"]  # no output, no probe left behind


def bucket_texts(s3, bucket: str) -> bytes:
    """Every object of the bucket, concatenated."""
    return b"".join(s3.fetch(bucket, key) for key in s3.keys(bucket))


def test_a_prefect_block_gives_the_credentials_when_the_environment_has_none(workspace, emulator, s3, monkeypatch):
    """No AWS_* variable, no profile: inputs, outputs and the work store reach the bucket with the block's
    key (the server checks every request's key), which never shows in logs, artifacts, parameters or outputs."""
    from conftest import server_texts

    s3.bucket("blocked")
    users = workspace / "users.parquet"
    write_users(users, 300)
    source = s3.upload(users, "blocked", "in/users.parquet")
    user = s3.user("block-user", ["s3:*"], "blocked")
    block = s3.save_block("moto-block-user", user)
    without_credentials(monkeypatch)
    config = write_config(workspace / "config.json", emulator.url, chunk_size=100)
    env = {"BATCHFLOWS_STORAGE_BLOCK": block, "BATCHFLOWS_WORK_DIR": "s3://blocked/work",
           "BATCHFLOWS_LOCAL_DIR": str(workspace / "container-disk")}
    s3.enforce_auth(True)
    try:
        result = run_cli("card-recommendations", source, "-o", "s3://blocked/out/cards.csv", "--config", str(config),
                         env=env)
    finally:
        s3.enforce_auth(False)
    assert result.returncode == 0, result.stderr[-2000:]
    (workspace / "cards.csv").write_bytes(s3.fetch("blocked", "out/cards.csv"))
    out = read_table(workspace / "cards.csv")
    assert len(out) == 300 and (out.status == "ok").all() and emulator.stats("cards")["ok_keys"] == 300
    assert s3.keys("blocked", "work/journals/")  # the work store went to the bucket through the block too
    secret = user["AWS_SECRET_ACCESS_KEY"]
    assert len(secret) >= 20
    assert secret not in result.stdout + result.stderr
    assert not any(secret in text for text in server_texts())
    assert secret.encode() not in bucket_texts(s3, "blocked")
    assert not [path for path in (workspace / "container-disk").rglob("*")
                if path.is_file() and secret.encode() in path.read_bytes()]


@pytest.mark.parametrize("case, expected", [
    ("no such block", "s3://blocked-bad/users.csv: BATCHFLOWS_STORAGE_BLOCK=aws-credentials/no-such-block: Unable to "
                      "find block document named no-such-block for block type aws-credentials"),
    ("not a block name", "s3://blocked-bad/users.csv: BATCHFLOWS_STORAGE_BLOCK=prod: name a Prefect block as "
                         "aws-credentials/<name> (s3://) or gcp-credentials/<name> (gs://)"),
    ("read-only block", "s3://blocked-bad/out/cards.csv: access denied (Access Denied); the credentials in use may "
                        "not do this; nothing was sent"),
])
def test_a_block_that_cannot_serve_stops_with_one_line_before_any_request(workspace, emulator, s3, monkeypatch,
                                                                           case, expected):
    s3.bucket("blocked-bad")
    users = workspace / "users.csv"
    write_users(users, 20)
    source = s3.upload(users, "blocked-bad", "users.csv")
    user = s3.user(f"bad-{case.replace(' ', '-')}", ["s3:GetObject", "s3:ListBucket"], "blocked-bad")
    block = {"no such block": "aws-credentials/no-such-block", "not a block name": "prod",
             "read-only block": s3.save_block("moto-read-only", user)}[case]
    without_credentials(monkeypatch)
    config = write_config(workspace / "config.json", emulator.url)
    s3.enforce_auth(True)
    try:
        result = run_cli("card-recommendations", source, "-o", "s3://blocked-bad/out/cards.csv", "--config",
                         str(config), env={"BATCHFLOWS_STORAGE_BLOCK": block})
    finally:
        s3.enforce_auth(False)
    errors = [line for line in result.stderr.splitlines() if line.startswith("batchflows: error:")]
    assert result.returncode == 1, result.stderr[-2000:]
    assert errors == [f"batchflows: error: {expected}"], result.stderr[-2000:]
    assert "Traceback" not in result.stderr and user["AWS_SECRET_ACCESS_KEY"] not in result.stdout + result.stderr
    assert emulator.stats("cards")["total"] == 0
    assert s3.keys("blocked-bad") == ["users.csv"]


def test_a_killed_run_resumes_from_the_bucket_after_the_local_work_dir_is_gone(workspace, emulator, s3):
    """A throwaway container: the work store in the bucket, the local disk deleted between the runs."""
    s3.bucket("state")
    users = workspace / "users.csv"
    write_users(users, 1000)
    source = s3.upload(users, "state", "in/users.csv")
    config = write_config(workspace / "config.json", emulator.url, chunk_size=100, concurrency=20)
    emulator.configure("cards", latency=0.2)
    reference = run_cli("card-recommendations", str(users), "-o", str(workspace / "reference.csv"), "--config",
                        str(config), env={"BATCHFLOWS_WORK_DIR": str(workspace / "reference-work")})
    assert reference.returncode == 0, reference.stderr[-2000:]
    emulator.reset()
    emulator.configure("cards", latency=0.2)
    env = {"BATCHFLOWS_WORK_DIR": "s3://state/work", "BATCHFLOWS_LOCAL_DIR": str(workspace / "container-disk")}
    command = [sys.executable, "-m", "flows.cli", "card-recommendations", source, "-o", "s3://state/out/cards.csv",
               "--config", str(config)]
    kill_when(command, lambda: emulator.stats("cards")["ok_keys"] >= 450, env=env)
    done_before = emulator.stats("cards")["ok_keys"]
    assert 450 <= done_before < 1000
    assert "out/cards.csv" not in s3.keys("state", "out/")
    assert s3.keys("state", "work/journals/")  # the journal is in the bucket
    shutil.rmtree(workspace / "container-disk")  # the container is gone: staged chunks, local stores
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, **env})
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "chunks finished in an earlier run" in rerun.stdout + rerun.stderr
    stats = emulator.stats("cards")
    assert stats["ok_keys"] == 1000
    assert len(stats["ok_repeated_keys"]) <= 100  # as on local disk: at most one chunk's requests in flight
    (workspace / "resumed.csv").write_bytes(s3.fetch("state", "out/cards.csv"))
    pd.testing.assert_frame_equal(read_table(workspace / "resumed.csv"), read_table(workspace / "reference.csv"))
    journals = s3.keys("state", "work/journals/")
    assert len(journals) == 10  # one object per chunk once the chunks were read back (compacted)


def test_book_requests_write_their_four_outputs_to_the_bucket_and_keep_the_model_local(books, emulator, s3,
                                                                                       monkeypatch):
    from flows.book_requests import book_requests

    workspace, _, _ = books
    s3.bucket("books-out")
    monkeypatch.setenv("BATCHFLOWS_LOCAL_DIR", str(workspace / "container-disk"))
    apis = {"geocoding": {"base_url": emulator.url}, "messaging": {"base_url": emulator.url + "/messaging"}}
    local = book_requests(str(workspace / "requests.csv"), str(workspace / "history.csv"), str(workspace / "out"), **apis)
    model = workspace / "container-disk" / "s3" / "books-out" / "run" / "dedupe_model.json"
    model.parent.mkdir(parents=True)  # where a bucket output folder's model is looked for: reused, not retrained
    shutil.copy(workspace / "out" / "dedupe_model.json", model)
    remote = book_requests(str(workspace / "requests.csv"), str(workspace / "history.csv"), "s3://books-out/run/",
                           **apis)
    assert remote["accepted"] == local["accepted"] and remote["output_dir"] == "s3://books-out/run/"
    names = ["accepted.csv", "duplicates.csv", "messages.csv", "rejected.csv"]
    assert sorted(s3.keys("books-out")) == [f"run/{name}" for name in names]  # no model, no temporary object
    for name in names:
        assert s3.fetch("books-out", f"run/{name}") == (workspace / "out" / name).read_bytes(), name
    assert model.read_bytes() == (workspace / "out" / "dedupe_model.json").read_bytes()


def test_file_urls_are_local_paths(workspace, emulator):
    from flows.cli import main

    users = workspace / "users.csv"
    write_users(users, 50)
    config = write_config(workspace / "config.json", emulator.url)
    assert main(["card-recommendations", f"file://{users}", "-o", f"file://{workspace}/out/result.parquet",
                 "--config", str(config)]) == 0
    out = pd.read_parquet(workspace / "out" / "result.parquet")
    assert len(out) == 50 and (out.status == "ok").all()


def test_a_gcp_credentials_block_gives_gcsfs_its_service_account(monkeypatch):
    """gs:// has no server here: the block's service account reaches gcsfs (no request is made)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from prefect_gcp import GcpCredentials

    from tasks.engine import storage

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    account = {"type": "service_account", "project_id": "batchflows-test", "private_key_id": "k1", "private_key": key,
               "client_email": "reader@batchflows-test.iam.gserviceaccount.com", "client_id": "1",
               "token_uri": "https://oauth2.googleapis.com/token"}
    GcpCredentials(service_account_info=account).save("gcs-reader", overwrite=True)
    monkeypatch.setenv("BATCHFLOWS_STORAGE_BLOCK", "gcp-credentials/gcs-reader")
    fs, inside = storage.filesystem("gs://media/collection")
    assert inside == "media/collection" and fs.project == "batchflows-test"
    assert fs.credentials.credentials.service_account_email == account["client_email"]
    assert storage.filesystem("s3://media/collection")[0].key is None  # s3:// is not this block's store
