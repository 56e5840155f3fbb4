"""File metadata over a bucket prefix on a real S3-compatible server on loopback (moto's,
tests/s3_server.py): the same answers as the tree on disk, and large objects described from the
blocks their parsers read (counted by a TCP relay in front of the server)."""
import json
import socket
import threading

import numpy as np
import pandas as pd
from PIL import Image

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
        s3.upload(path, "media", f"collection/{path.relative_to(root)}")
    local = file_metadata(str(root), str(workspace / "local.jsonl"), chunk_size=10)
    remote = file_metadata("s3://media/collection", "s3://media/out/metadata.jsonl", chunk_size=10)
    assert remote["rows"] == local["rows"] == len(list(p for p in root.rglob("*") if p.is_file()))
    (workspace / "remote.jsonl").write_bytes(s3.fetch("media", "out/metadata.jsonl"))
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
        s3.upload(root / name, "large", f"media/{name}")
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
