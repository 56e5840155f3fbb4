"""The Drive v3 emulator works with the real google-api-python-client: listing, paging, fields, downloads, errors."""
import hashlib
import io
import os

import google.auth.credentials
import httpx
import pytest
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import MediaIoBaseDownload

from emulators import Emulator
from emulators.drive import FOLDER, drive_id

PDF = "application/pdf"
HOSTILE = ["../../etc/passwd.pdf", "a/b\\c.pdf", "nul\x00byte.pdf", "x" * 296 + ".pdf", "same.pdf", "same.pdf",
           " spaced .pdf", "émoji 💊.pdf"]


def service(url: str):
    return build("drive", "v3", credentials=google.auth.credentials.AnonymousCredentials(), static_discovery=True,
                 client_options={"api_endpoint": f"{url}/drive/v3/"})


def add(url: str, *files: dict) -> list[dict]:
    answer = httpx.post(f"{url}/_emulator/drive/files", json=list(files), timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["files"]


def list_all(drive, **query) -> list[dict]:
    files, request = [], drive.files().list(**query)
    while request is not None:
        page = request.execute()
        files += page["files"]
        request = drive.files().list_next(request, page)
    return files


def download(drive, file_id: str, chunk: int = 1 << 20) -> bytes:
    buffer = io.BytesIO()
    downloader, done = MediaIoBaseDownload(buffer, drive.files().get_media(fileId=file_id), chunksize=chunk), False
    while not done:
        _, done = downloader.next_chunk()
    return buffer.getvalue()


def google_error(error: HttpError) -> dict:
    assert error.error_details and len(error.error_details) == 1
    return error.error_details[0]


@pytest.fixture
def tree(emulator, tmp_path):
    """rx/ with 3 PDFs, a note, scans/2024/ with 2 PDFs: the drive_root of the session's emulator."""
    for path, data in [("rx/a.pdf", b"%PDF-a"), ("rx/b.pdf", b"%PDF-bb"), ("rx/c.PDF", b"%PDF-ccc"),
                       ("rx/notes.txt", b"hi"), ("rx/scans/2024/d.pdf", b"%PDF-d"), ("rx/scans/2024/e.pdf", b"")]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(data)
    emulator.configure("drive", drive_root=str(tmp_path / "rx"))
    return tmp_path / "rx"


def test_the_client_pages_through_1234_files_and_sees_each_id_exactly_once(emulator):
    drive = service(emulator.url)
    folder = add(emulator.url, {"name": "inbox", "mimeType": FOLDER})[0]["id"]
    ids = {f["id"] for f in add(emulator.url, *({"name": f"rx{i:05d}.pdf", "size": 100, "parents": [folder]}
                                                 for i in range(1234)))}
    query = {"q": f"'{folder}' in parents and trashed = false", "fields": "nextPageToken, files(id, name)"}
    for size in (100, 1000):
        files = list_all(drive, pageSize=size, **query)
        assert len(files) == 1234 and {f["id"] for f in files} == ids
    first, again = (drive.files().list(pageSize=500, **query).execute() for _ in range(2))
    assert first["nextPageToken"] == again["nextPageToken"]  # opaque but stable
    assert [f["name"] for f in list_all(drive, pageSize=1000, orderBy="name desc", **query)][:2] == [
        "rx01233.pdf", "rx01232.pdf"]
    assert emulator.stats("drive")["list_calls"] == 13 + 2 + 2 + 2


def test_q_filters_folders_and_a_recursive_walk(emulator, tree):
    drive, root = service(emulator.url), drive_id(str(tree))
    top = list_all(drive, q=f"'{root}' in parents and trashed = false", fields="files(name, mimeType, parents)")
    assert sorted(f["name"] for f in top) == ["a.pdf", "b.pdf", "c.PDF", "notes.txt", "scans"]
    assert all(f["parents"] == [root] for f in top)
    pdfs = list_all(drive, q=f"'{root}' in parents and mimeType = 'application/pdf'")
    assert sorted(f["name"] for f in pdfs) == ["a.pdf", "b.pdf", "c.PDF"]
    others = list_all(drive, q=f"'{root}' in parents and mimeType != 'application/pdf' and mimeType != '{FOLDER}'")
    assert [f["name"] for f in others] == ["notes.txt"]
    assert [f["name"] for f in list_all(drive, q="name contains 'note'")] == ["notes.txt"]

    def walk(folder: str) -> list[str]:  # PDFs and sub-folders, by name, as the prescription listing asks
        kinds = f"(mimeType = 'application/pdf' or mimeType = '{FOLDER}')"
        children = list_all(drive, q=f"'{folder}' in parents and {kinds} and trashed = false", orderBy="name",
                            fields="nextPageToken, files(id, name, mimeType)")
        return [n for c in children for n in (walk(c["id"]) if c["mimeType"] == FOLDER else [c["name"]])]
    assert walk(root) == ["a.pdf", "b.pdf", "c.PDF", "d.pdf", "e.pdf"]
    assert [f["name"] for f in list_all(drive, q=f"not name contains 'notes' and not mimeType = '{FOLDER}'")] == [
        "a.pdf", "b.pdf", "c.PDF", "d.pdf", "e.pdf"]
    assert [f["name"] for f in list_all(drive, q=f"mimeType = '{FOLDER}'")] == ["rx", "scans", "2024"]


def test_trashed_files_are_listed_unless_the_query_excludes_them(emulator):
    drive = service(emulator.url)
    add(emulator.url, {"name": "kept.pdf", "content": "1"}, {"name": "binned.pdf", "content": "2", "trashed": True})
    assert len(list_all(drive)) == 2
    assert [f["name"] for f in list_all(drive, q="trashed = false")] == ["kept.pdf"]


def test_fields_select_what_is_served(emulator, tree):
    drive, root = service(emulator.url), drive_id(str(tree))
    plain = drive.files().list(q=f"'{root}' in parents", pageSize=2).execute()
    assert set(plain) == {"kind", "incompleteSearch", "nextPageToken", "files"}
    assert set(plain["files"][0]) == {"kind", "id", "name", "mimeType"}
    full = drive.files().list(q=f"'{root}' in parents and name = 'a.pdf'",
                              fields="files(id, name, mimeType, size, md5Checksum, modifiedTime, parents)").execute()
    (a,) = full["files"]
    assert a["size"] == "6" and a["md5Checksum"] == hashlib.md5(b"%PDF-a").hexdigest() and a["mimeType"] == PDF
    assert a["modifiedTime"].endswith("Z") and set(full) == {"files"}
    no_token = drive.files().list(q=f"'{root}' in parents", pageSize=2, fields="files(id)").execute()
    assert set(no_token) == {"files"}  # like Drive: no nextPageToken unless asked for
    assert drive.files().get(fileId=a["id"], fields="name,size").execute() == {"name": "a.pdf", "size": "6"}
    with pytest.raises(HttpError) as bad:
        drive.files().list(fields="files(id, webViewLink)").execute()
    assert bad.value.status_code == 400 and google_error(bad.value)["location"] == "fields"


def test_a_50_mb_file_is_downloaded_in_ranges_and_streamed_from_disk(tmp_path):
    with open(tmp_path / "big.pdf", "wb") as big:
        for _ in range(50):
            big.write(os.urandom(1 << 20))
    expected = hashlib.md5((tmp_path / "big.pdf").read_bytes()).hexdigest()
    with Emulator({"drive": {"drive_root": str(tmp_path)}}) as emu:  # its own process, to measure its memory
        drive, peak_before = service(emu.url), peak_rss(emu.process.pid)
        (meta,) = drive.files().list(q="name = 'big.pdf'", fields="files(id, size, md5Checksum)").execute()["files"]
        data = download(drive, meta["id"])
        assert peak_rss(emu.process.pid) - peak_before < 20 << 20
        stats = emu.stats("drive")
    assert len(data) == 50 << 20 == int(meta["size"])
    assert hashlib.md5(data).hexdigest() == meta["md5Checksum"] == expected
    assert stats["media_calls"] == 50 and stats["bytes_sent"] == 50 << 20 and stats["statuses"]["206"] == 50
    assert stats["distinct_keys"] == 1 and stats["repeated_keys"] == {}  # by_key counts downloads, not chunks


def peak_rss(pid: int) -> int:
    status = open(f"/proc/{pid}/status").read()
    return int(status.split("VmHWM:")[1].split()[0]) * 1024


def test_ranges_like_google(emulator):
    (file,) = add(emulator.url, {"name": "r.pdf", "content": "0123456789"})
    (empty,) = add(emulator.url, {"name": "empty.pdf", "content": ""})
    url = f"{emulator.url}/drive/v3/files/{file['id']}?alt=media"
    whole = httpx.get(url)
    assert whole.status_code == 200 and whole.content == b"0123456789" and whole.headers["content-type"] == PDF
    part = httpx.get(url, headers={"Range": "bytes=2-4"})
    assert part.status_code == 206 and part.content == b"234" and part.headers["content-range"] == "bytes 2-4/10"
    assert httpx.get(url, headers={"Range": "bytes=-3"}).content == b"789"
    assert httpx.get(url, headers={"Range": "bytes=8-100"}).headers["content-range"] == "bytes 8-9/10"
    assert httpx.get(url, headers={"Range": "bytes=10-"}).status_code == 416
    assert download(service(emulator.url), empty["id"]) == b""  # the client handles Google's 416 for empty files


def test_hostile_names_are_served_verbatim(emulator, tmp_path):
    (tmp_path / "real.pdf").write_bytes(b"%PDF-real")
    added = add(emulator.url, *({"name": name, "content": f"body {i}"} for i, name in enumerate(HOSTILE)),
                {"name": "../renamed.pdf", "path": str(tmp_path / "real.pdf")}, {"name": "gen.pdf", "size": 70000})
    drive = service(emulator.url)
    listed = list_all(drive, q="'root' in parents", fields="files(id, name, size, md5Checksum)")
    assert [f["name"] for f in listed] == HOSTILE + ["../renamed.pdf", "gen.pdf"]
    assert len({f["id"] for f in listed}) == len(listed)  # duplicate names, distinct ids
    for i, file in enumerate(added[:len(HOSTILE)]):
        assert download(drive, file["id"]) == f"body {i}".encode()
    assert download(drive, added[-2]["id"]) == b"%PDF-real"
    generated = download(drive, added[-1]["id"], chunk=1 << 14)
    assert len(generated) == 70000 and generated.startswith(b"%PDF-")
    assert hashlib.md5(generated).hexdigest() == listed[-1]["md5Checksum"]


def test_unknown_ids_and_folders_answer_like_google(emulator, tree):
    drive = service(emulator.url)
    for request in (drive.files().get(fileId="nope"), drive.files().get_media(fileId="nope")):
        with pytest.raises(HttpError) as missing:
            request.execute()
        assert missing.value.status_code == 404
        assert google_error(missing.value) == {"domain": "global", "reason": "notFound", "message": "File not found: "
                                               "nope.", "locationType": "parameter", "location": "fileId"}
    with pytest.raises(HttpError) as folder:
        drive.files().get_media(fileId=drive_id(str(tree))).execute()
    assert folder.value.status_code == 403 and google_error(folder.value)["reason"] == "fileNotDownloadable"


@pytest.mark.parametrize("params", [{"q": "name = unquoted"}, {"q": "modifiedTime > '2024-01-01'"},
                                    {"q": "trashed = false and"}, {"q": "(trashed = false"}, {"q": "'a' 'b'"}])
def test_unsupported_q_is_googles_400(emulator, params):
    answer = httpx.get(f"{emulator.url}/drive/v3/files", params=params)
    assert answer.status_code == 400
    error = {"domain": "global", "reason": "invalid", "message": "Invalid Value", "locationType": "parameter",
             "location": "q"}
    assert answer.json() == {"error": {"code": 400, "message": "Invalid Value", "errors": [error]}}


def test_bad_page_tokens_and_sizes_are_400(emulator):
    drive = service(emulator.url)
    add(emulator.url, *({"name": f"{i}.pdf"} for i in range(3)))
    token = drive.files().list(pageSize=1).execute()["nextPageToken"]
    for params, location in [({"pageToken": "garbage"}, "pageToken"), ({"pageToken": token, "q": "trashed = false"},
                             "pageToken"), ({"pageSize": 1001}, "pageSize"), ({"orderBy": "size"}, "orderBy")]:
        with pytest.raises(HttpError) as bad:
            drive.files().list(**params).execute()
        assert bad.value.status_code == 400 and google_error(bad.value)["location"] == location


def test_rate_limit_is_googles_403_and_the_client_retries_it(emulator):
    drive = service(emulator.url)
    emulator.configure("drive", rate_limit=2, rate_window=0.5)
    with pytest.raises(HttpError) as limited:
        for _ in range(3):
            drive.files().list().execute()
    assert limited.value.status_code == 403 and limited.value.reason == "User Rate Limit Exceeded"
    assert google_error(limited.value) == {"domain": "usageLimits", "reason": "userRateLimitExceeded",
                                           "message": "User Rate Limit Exceeded"}
    for _ in range(3):
        drive.files().list().execute(num_retries=6)  # googleapiclient backs off on these 403s
    emulator.configure("drive", drive_rate_limit_status=429, drive_rate_limit_reason="rateLimitExceeded")
    with pytest.raises(HttpError) as limited:
        for _ in range(3):
            drive.files().list().execute()
    assert limited.value.status_code == 429 and google_error(limited.value)["reason"] == "rateLimitExceeded"


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_backend_errors(emulator, status):
    emulator.configure("drive", error_rate=1.0, error_statuses=[status])
    with pytest.raises(HttpError) as failed:
        service(emulator.url).files().list().execute()
    assert failed.value.status_code == status and google_error(failed.value)["reason"] == "backendError"
