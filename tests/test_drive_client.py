"""tasks/apis/drive.py against the Drive emulator: paged recursive listing, safe names, streamed downloads,
403 rate limits retried under the shared limiter, finished files not fetched again."""
import asyncio
import hashlib

import pytest

from tasks.engine.ratelimit import FileLimits
from tasks.apis.http import ApiSpec
from tasks.apis.drive import MAX_NAME, Drive, safe_name, status_of
from tasks.apis.http import RetryPolicy
from test_drive_emulator import HOSTILE, add


def run(emulator, work, coroutine_fn, rate=None):
    spec = ApiSpec("drive", emulator.url, rate_per_second=rate, status_of=status_of,
                   retry=RetryPolicy(max_attempts=4, backoff_base=0.05))

    async def go():
        api = spec.client(8, FileLimits(work))
        async with api:
            result = await coroutine_fn(Drive(api, f"{emulator.url}/drive/v3/"))
        api.close()
        return result, api.stats

    return asyncio.run(go())


def test_a_folder_is_listed_page_by_page_and_recursively_with_paths(emulator, tmp_path):
    folder = add(emulator.url, {"name": "rx", "mimeType": "application/vnd.google-apps.folder"})[0]["id"]
    sub = add(emulator.url, {"name": "2024", "mimeType": "application/vnd.google-apps.folder", "parents": [folder]})[0]["id"]
    add(emulator.url, *[{"name": f"p{n:04d}.pdf", "size": 100, "parents": [folder]} for n in range(1234)],
        {"name": "notes.txt", "content": "x", "parents": [folder]}, {"name": "deep.pdf", "size": 10, "parents": [sub]})
    (flat, _), (deep, _) = [run(emulator, tmp_path, lambda d, r=r: d.list_folder(folder, recursive=r, page_size=100))
                            for r in (False, True)]
    assert [f["name"] for f in flat] == [f"p{n:04d}.pdf" for n in range(1234)]
    assert len({f["id"] for f in flat}) == 1234
    assert [f["path"] for f in deep] == [f["path"] for f in flat] + ["2024/deep.pdf"]


def test_hostile_names_stay_inside_the_download_directory(emulator, tmp_path):
    files = add(emulator.url, *[{"name": name, "content": f"%PDF-{n}"} for n, name in enumerate(HOSTILE)])
    target = tmp_path / "downloads"
    paths, _ = run(emulator, tmp_path, lambda d: asyncio.gather(*(d.download(f, target) for f in files)))
    assert len(set(paths)) == len(HOSTILE) and all(p.parent == target.resolve() for p in paths)
    assert [p.read_text() for p in paths] == [f"%PDF-{n}" for n in range(len(HOSTILE))]
    assert all("\x00" not in p.name and len(p.name) <= 200 and not p.name.startswith(".") for p in paths)
    assert safe_name("../../etc/passwd.pdf", "id1") == "id1-etc_passwd.pdf"
    assert safe_name("..", "id/2") == "id_2-file" and len(safe_name("x" * 300 + ".pdf", "i")) == 2 + MAX_NAME


def test_downloads_stream_in_chunks_and_finished_files_are_not_fetched_again(emulator, tmp_path):
    big = tmp_path / "big.pdf"
    with open(big, "wb") as handle:
        for block in range(20):
            handle.write(hashlib.sha256(str(block).encode()).digest() * (1 << 15))  # 1 MiB each
    file = add(emulator.url, {"name": "big.pdf", "path": str(big)})[0]
    meta, _ = run(emulator, tmp_path, lambda d: d._call(lambda s: s.files().get(
        fileId=file["id"], fields="id, name, size, md5Checksum").execute))
    path, _ = run(emulator, tmp_path, lambda d: d.download(meta, tmp_path / "out", chunk_bytes=4 << 20))
    assert path.read_bytes() == big.read_bytes() and emulator.stats("drive")["media_calls"] == 5
    run(emulator, tmp_path, lambda d: d.download(meta, tmp_path / "out"))
    assert emulator.stats("drive")["media_calls"] == 5  # size and md5 match: not downloaded again


@pytest.mark.parametrize("status", [403, 429])
def test_rate_limit_answers_are_retried_under_the_shared_limit(emulator, tmp_path, status):
    emulator.configure("drive", rate_limit=5, drive_rate_limit_status=status)
    files = add(emulator.url, *[{"name": f"f{n}.pdf", "content": f"%PDF-{n}"} for n in range(30)])
    paths, stats = run(emulator, tmp_path, lambda d: asyncio.gather(*(d.download(f, tmp_path / "dl") for f in files)),
                       rate=20)
    assert len(paths) == 30 and stats.throttled > 0  # over the API's 5/s: throttled, retried, all done
    emulator.reset()
    emulator.configure("drive", rate_limit=5, drive_rate_limit_status=status)
    files = add(emulator.url, *[{"name": f"g{n}.pdf", "content": "%PDF"} for n in range(30)])
    _, stats = run(emulator, tmp_path, lambda d: asyncio.gather(*(d.download(f, tmp_path / "dl2") for f in files)),
                   rate=4)
    seen = emulator.stats("drive")
    assert stats.throttled == 0 and seen["max_1s"] <= 5  # under the API's rate: no rate-limit answers at all
