"""Inputs, outputs and run state on object storage: a real S3-compatible server on loopback (moto's,
tests/s3_server.py), the card emulator, the real flows and CLI."""
import json
import os
import shutil
import socket
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest
from conftest import kill_when, read_table, run_cli, write_config
from PIL import Image
from s3_server import without_credentials

from flows.card_recommendations import card_recommendations
from tasks.engine.storage import AtomicOutput
from tasks.engine.tables import OutputWriter
from tasks.samples.tables import write_users


def upload(s3, path, bucket: str, key: str) -> str:
    s3.client().upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{key}"


def fetch(s3, bucket: str, key: str) -> bytes:
    return s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def test_card_recommendations_from_parquet_in_the_bucket_to_csv_in_the_bucket(workspace, emulator, s3):
    s3.bucket("cards-in")
    users = workspace / "users.parquet"
    write_users(users, 1200)
    source = upload(s3, users, "cards-in", "users.parquet")
    config = write_config(workspace / "config.json", emulator.url, chunk_size=100, work_dir=str(workspace / "local-work"))
    card_recommendations(str(users), str(workspace / "local.csv"), str(config))
    emulator.reset()
    config = write_config(workspace / "config.json", emulator.url, chunk_size=100, work_dir=str(workspace / "s3-work"))
    figures = card_recommendations(source, "s3://cards-in/out/recommendations.csv", str(config))
    assert figures["rows"] == figures["ok"] == 1200 and figures["output"] == "s3://cards-in/out/recommendations.csv"
    assert emulator.stats("cards")["ok_keys"] == 1200  # the bucket run sent its own requests
    assert fetch(s3, "cards-in", "out/recommendations.csv") == (workspace / "local.csv").read_bytes()
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
        assert fetch(s3, "atomic-out", f"out/result{suffix}") == (workspace / f"result{suffix}").read_bytes()


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
    return upload(s3, users, "preflight", "users.csv")


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
    return b"".join(fetch(s3, bucket, key) for key in s3.keys(bucket))


def test_a_prefect_block_gives_the_credentials_when_the_environment_has_none(workspace, emulator, s3, monkeypatch):
    """No AWS_* variable, no profile: inputs, outputs and the work store reach the bucket with the block's
    key (the server checks every request's key), which never shows in logs, artifacts, parameters or outputs."""
    from conftest import server_texts

    s3.bucket("blocked")
    users = workspace / "users.parquet"
    write_users(users, 300)
    source = upload(s3, users, "blocked", "in/users.parquet")
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
    (workspace / "cards.csv").write_bytes(fetch(s3, "blocked", "out/cards.csv"))
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
    source = upload(s3, users, "blocked-bad", "users.csv")
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
    source = upload(s3, users, "state", "in/users.csv")
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
    (workspace / "resumed.csv").write_bytes(fetch(s3, "state", "out/cards.csv"))
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
        assert fetch(s3, "books-out", f"run/{name}") == (workspace / "out" / name).read_bytes(), name
    assert model.read_bytes() == (workspace / "out" / "dedupe_model.json").read_bytes()


COMPARED = ["size", "status", "format", "mime", "parser", "width", "height", "duration_s", "sample_rate", "channels",
            "frame_rate", "codec", "page_count", "title", "author"]


def media_tree(root):
    """Real files of every generated kind, formats no library here writes, an empty file and noise."""
    from test_file_metadata import MADE, mixed_tree

    from tasks.samples import files as samples

    mixed_tree(root / "mixed", files=len(samples.GENERATORS) * 2)
    (root / "made").mkdir()
    for name, (_, write) in MADE.items():
        write(root / "made" / name)
    (root / "empty.mp4").write_bytes(b"")
    samples.write_random(root / "noise.mp4")
    samples.write_wav(root / "long.wav", seconds=200)  # 3.2 MB: over a 1 MB cap, yet its header is all a parse reads
    noise = np.random.default_rng(3).integers(0, 256, (900, 1200, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "photo.jpg", quality=95)  # ~2 MB, which hachoir reads to the end of the scan


def by_relative_path(frame, root: str):
    frame = frame.assign(path=frame.path.str.removeprefix(root)).set_index("path").sort_index()
    return frame[COMPARED]


def test_file_metadata_of_a_bucket_prefix_equals_the_same_tree_on_disk(workspace, s3, monkeypatch):
    from test_file_metadata import read_output

    from flows.file_metadata import file_metadata

    root = workspace / "tree"
    media_tree(root)
    s3.bucket("media")
    s3.client().put_object(Bucket="media", Key="elsewhere/not-listed.png", Body=b"\x89PNG")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        upload(s3, path, "media", f"collection/{path.relative_to(root)}")
    local = file_metadata(str(root), str(workspace / "local.jsonl"), chunk_size=10)
    remote = file_metadata("s3://media/collection", "s3://media/out/metadata.jsonl", chunk_size=10)
    assert remote["rows"] == local["rows"] == len(list(p for p in root.rglob("*") if p.is_file()))
    (workspace / "remote.jsonl").write_bytes(fetch(s3, "media", "out/metadata.jsonl"))
    on_disk, in_bucket = read_output(workspace / "local.jsonl"), read_output(workspace / "remote.jsonl")
    assert in_bucket.etag.str.len().min() > 2  # every object's ETag, the key of a rerun
    pd.testing.assert_frame_equal(by_relative_path(in_bucket, "s3://media/collection/"),
                                  by_relative_path(on_disk, f"{root}/"))

    again = file_metadata("s3://media/collection", "s3://media/out/metadata.jsonl", chunk_size=10)
    assert again["requests"] == 0  # every (key, size, ETag) known: nothing fetched or parsed again
    body = bytearray((root / "made" / "wide.psd").read_bytes())
    body[-1] ^= 0xFF  # the same key and size, another body: only the ETag tells
    s3.client().put_object(Bucket="media", Key="collection/made/wide.psd", Body=bytes(body))
    changed = file_metadata("s3://media/collection", "s3://media/out/metadata.jsonl", chunk_size=10)
    assert changed["requests"] == 1

    monkeypatch.setenv("BATCHFLOWS_WORK_DIR", str(workspace / "fresh-work"))  # no earlier outcomes to reuse
    capped = file_metadata("s3://media/collection", str(workspace / "capped.jsonl"), include=["long.wav", "photo.jpg"],
                           max_download_mb=1)
    rows = read_output(workspace / "capped.jsonl").set_index("path")
    wav, photo = rows.loc["s3://media/collection/long.wav"], rows.loc["s3://media/collection/photo.jpg"]
    assert capped["requests"] == 2 and wav.status == "ok" and not wav.error
    assert wav.duration_s == on_disk.set_index("path").loc[f"{root}/long.wav"].duration_s == 200.0
    assert json.loads(wav.metadata_json)["bucket_read"]["bytes"] < 1 << 20  # a block, not the object
    assert photo.status == "failed" and pd.isna(photo.format)
    assert photo.error.startswith("read cap reached: describing this object (")
    assert photo.error.endswith("needed more than the 1,048,576 bytes --max-download-mb lets one object fetch")
    larger = file_metadata("s3://media/collection", str(workspace / "larger.jsonl"), include=["long.wav", "photo.jpg"],
                           max_download_mb=8)
    assert larger["requests"] == 1  # the outcome of the cap counts only under that cap; the WAV's stands
    photo = read_output(workspace / "larger.jsonl").set_index("path").loc["s3://media/collection/photo.jpg"]
    whole = on_disk.set_index("path").loc[f"{root}/photo.jpg"]
    assert (photo.status, photo.format, photo.width, photo.height) == ("ok", "jpeg", whole.width, whole.height) == (
        "ok", "jpeg", 1200, 900)


class CountingRelay:
    """A TCP relay on loopback in front of the S3 server that counts the bytes the server sends back
    (HTTP headers and listings included): what a run fetched, measured outside the code under test."""

    def __init__(self, port: int):
        self.target, self.sent, self.lock = port, 0, threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, counted: bool) -> None:
        try:
            while data := source.recv(1 << 16):
                if counted:
                    with self.lock:
                        self.sent += len(data)
                target.sendall(data)
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            source.close()

    def close(self) -> None:
        self.listener.close()


def test_large_objects_are_described_from_the_blocks_their_parsers_read(workspace, s3, monkeypatch):
    import h5py
    import s3fs
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, NameObject
    from test_file_metadata import read_output

    from flows.file_metadata import file_metadata
    from tasks.samples import files as samples

    root = workspace / "large"
    root.mkdir()
    samples.write_wav(root / "hour.wav", seconds=1500)  # 24 MB: a fmt chunk, then the samples
    with h5py.File(root / "grid.h5", "w") as out:  # 16 MB of data after the attributes
        out.attrs.update({"title": "grid", "institution": "lab"})
        out.create_dataset("values", data=np.random.default_rng(5).random((1000, 2000)))
    writer = PdfWriter()  # 10 MB: 200 pages of 50 kB content streams, the document information at the start
    for page_number in range(200):
        page = writer.add_blank_page(width=595, height=842)
        content = DecodedStreamObject()
        content.set_data(f"% page {page_number}\n".encode() * 4000)
        page[NameObject("/Contents")] = writer._add_object(content)
    writer.add_metadata({"/Title": "Long report", "/Author": "A. Writer"})
    with open(root / "report.pdf", "wb") as handle:
        writer.write(handle)
    s3.bucket("large")
    sizes = {path.name: path.stat().st_size for path in root.iterdir()}
    for name in sizes:
        upload(s3, root / name, "large", f"media/{name}")
    file_metadata(str(root), str(workspace / "local.jsonl"))

    relay = CountingRelay(s3.port)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", relay.url)  # the flow and its parser processes go through the relay
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        figures = file_metadata("s3://large/media", str(workspace / "remote.jsonl"))
    finally:
        relay.close()
    assert figures["rows"] == figures["ok"] == 3
    on_disk, in_bucket = read_output(workspace / "local.jsonl"), read_output(workspace / "remote.jsonl")
    pd.testing.assert_frame_equal(by_relative_path(in_bucket, "s3://large/media/"), by_relative_path(on_disk, f"{root}/"))
    assert tuple(in_bucket.sort_values("path").page_count.fillna(0)) == (0, 0, 200)
    assert relay.sent < sum(sizes.values()) / 20  # 50 MB of objects, about 1 MB sent
    for row in in_bucket.itertuples():
        read = json.loads(row.metadata_json)["bucket_read"]
        assert read["object_size"] == sizes[row.path.rsplit("/", 1)[1]] and read["bytes"] < read["object_size"] / 10
    assert sum(json.loads(text)["bucket_read"]["bytes"] for text in in_bucket.metadata_json) < relay.sent


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
