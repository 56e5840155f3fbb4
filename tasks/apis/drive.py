"""Google Drive v3 through `google-api-python-client`: list a folder (paged, recursive on request)
and download files to a work directory, under the engine's shared rate limit and retry loop.

The client is synchronous (httplib2): each call runs in a thread with its own `httplib2.Http`
(the library's objects are not thread-safe) and goes through `ApiClient.call`, which rate-limits,
retries and classifies the answer. Drive says "rate limited" with 403 `userRateLimitExceeded` /
`rateLimitExceeded` as well as 429: `status_of` maps those 403s to 429, other 403s stay fatal.
File names from Drive are untrusted: `safe_name` keeps every download inside its directory.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.apis.http import ApiClient, ApiSpec, ErrorAnswer
from tasks.engine.job import Limits
from tasks.engine.outcomes import FatalError, RowError

FOLDER = "application/vnd.google-apps.folder"
PDF = "application/pdf"
FIELDS = "nextPageToken, files(id, name, mimeType, size, md5Checksum, modifiedTime, parents)"
RATE_LIMIT_REASONS = {"userRateLimitExceeded", "rateLimitExceeded", "dailyLimitExceeded"}
MAX_NAME = 120
DRIVE_URL = "https://www.googleapis.com/drive/v3/"
SCOPES = ["https://www.googleapis.com/auth/drive.readonly"]


def download_path(file: dict[str, Any], directory: Path) -> Path:
    """Where `Drive.download` puts the file."""
    return directory / safe_name(file.get("name", ""), file["id"])


class DriveAnswer:
    """An `HttpError` seen as an HTTP answer (status_code, headers, json(), text) for the retry loop."""

    def __init__(self, error):
        self.status_code, self.headers = int(error.resp.status), dict(error.resp)
        self.text = error.content.decode("utf-8", "replace") if isinstance(error.content, bytes) else str(error.content)

    def json(self) -> Any:
        return json.loads(self.text)


def status_of(answer) -> int:
    """Drive's 403 rate-limit errors are 429s; everything else keeps its status."""
    status = getattr(answer, "status_code", 200)
    if status == 403:
        try:
            reasons = {e.get("reason") for e in answer.json()["error"].get("errors", [])}
        except (ValueError, KeyError, TypeError, AttributeError):
            reasons = set()
        if reasons & RATE_LIMIT_REASONS:
            return 429
    return status


def safe_name(name: str, file_id: str) -> str:
    """A file name that cannot leave its directory: no separators, NUL, control characters or
    leading dots, at most MAX_NAME characters, prefixed by the (unique) Drive id."""
    text = unicodedata.normalize("NFC", name or "")
    text = re.sub(r"[\x00-\x1f\x7f/\\:]+", "_", text).strip(" .")
    stem, dot, ext = text.rpartition(".")
    if not dot or len(ext) > 10:
        stem, ext = text, ""
    stem = re.sub(r"_+", "_", re.sub(r"\.{2,}", "", stem)).strip("_ .")[: MAX_NAME - len(ext) - 1] or "file"
    clean_id = re.sub(r"[^A-Za-z0-9_-]", "_", file_id)[:64]
    return f"{clean_id}-{stem}{'.' + ext if ext else ''}"


def load_credentials(kind: str):
    """`anonymous` (the emulator), `default` (application-default credentials) or the path of a
    service-account JSON key file; read-only Drive scope."""
    import google.auth
    from google.auth.credentials import AnonymousCredentials
    from google.oauth2 import service_account

    if kind == "anonymous":
        return AnonymousCredentials()
    if kind == "default":
        return google.auth.default(scopes=SCOPES)[0]
    return service_account.Credentials.from_service_account_file(kind, scopes=SCOPES)


@dataclass(frozen=True)
class DriveSpec:
    """Where Drive is, how to sign in (see `load_credentials`) and its request limit; `client()`
    gives the per-chunk `Drive` (the chunk engine's API protocol)."""

    endpoint: str = DRIVE_URL
    credentials: str = "default"
    requests_per_minute: float | None = 100
    timeout: float = 120.0
    name: str = "drive"

    @property
    def fingerprint(self) -> str:
        return self.endpoint

    @property
    def row_rate_limit(self) -> float | None:
        """The most files per second its requests/min limit lets through (one download a file)."""
        return self.requests_per_minute / 60 if self.requests_per_minute else None

    def client(self, concurrency: int, limits: Limits) -> "Drive":
        per_second = self.requests_per_minute / 60 if self.requests_per_minute else None
        api = ApiSpec(self.name, self.endpoint, timeout=self.timeout, rate_per_second=per_second, rate_window=60,
                      status_of=status_of).client(concurrency, limits)
        return Drive(api, self.endpoint, load_credentials(self.credentials))


class Drive:
    """One per chunk: `await drive.list_folder(id)`, `await drive.download(file, directory)`."""

    def __init__(self, api: ApiClient, endpoint: str, credentials=None):
        self.api, self.endpoint, self.credentials = api, endpoint, credentials
        self.stats = api.stats
        self._local = threading.local()

    async def __aenter__(self) -> "Drive":
        await self.api.__aenter__()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.api.__aexit__(*exc)

    def close(self) -> None:
        self.api.close()

    def _http(self):
        """A new authorised connection: httplib2 objects must not be shared between threads."""
        import google.auth.credentials
        import httplib2
        from google_auth_httplib2 import AuthorizedHttp

        credentials = self.credentials or google.auth.credentials.AnonymousCredentials()
        return AuthorizedHttp(credentials, http=httplib2.Http(timeout=self.api.timeout))

    def _service(self):
        """This thread's service object."""
        if getattr(self._local, "service", None) is None:
            from googleapiclient.discovery import build

            self._local.service = build("drive", "v3", http=self._http(), static_discovery=True,
                                        cache_discovery=False, client_options={"api_endpoint": self.endpoint})
        return self._local.service

    async def _call(self, make):
        """`make(service)` -> a blocking callable, run in a thread under the limits and retries."""
        from googleapiclient.errors import HttpError

        def run():
            try:
                return make(self._service())()
            except HttpError as error:
                raise ErrorAnswer(DriveAnswer(error)) from None

        return await self.api.call(lambda: asyncio.to_thread(run))

    async def check_folder(self, folder_id: str) -> None:
        """The folder exists, is a folder and can be read: else a FatalError saying which, before any listing
        (an id that is wrong or not shared is not an empty folder)."""
        try:
            item = await self._call(lambda s: s.files().get(fileId=folder_id, fields="id, name, mimeType",
                                                            supportsAllDrives=True).execute)
        except RowError as error:
            if error.status == 404:
                raise FatalError(f"Drive folder {folder_id!r} was not found: check the id, and that the folder is "
                                 "shared with the account this run signs in with") from None
            raise FatalError(f"Drive folder {folder_id!r} cannot be read: {error}") from None
        except FatalError as error:
            raise FatalError(f"Drive folder {folder_id!r} cannot be read: {error}") from None
        if item.get("mimeType") != FOLDER:
            raise FatalError(f"Drive id {folder_id!r} is a file ({item.get('name')!r}), not a folder")

    async def list_folder(self, folder_id: str, recursive: bool = False, page_size: int = 1000,
                          path: str = "") -> list[dict[str, Any]]:
        """Every PDF in the folder (and its sub-folders when asked), in listing order, with `path`."""
        found, folders, token = [], [], None
        kinds = f"(mimeType = '{PDF}' or mimeType = '{FOLDER}')" if recursive else f"mimeType = '{PDF}'"
        query = f"'{folder_id}' in parents and {kinds} and trashed = false"
        while True:
            page = await self._call(lambda s, t=token: s.files().list(
                q=query, pageSize=page_size, pageToken=t, fields=FIELDS, orderBy="name",
                supportsAllDrives=True, includeItemsFromAllDrives=True).execute)
            for item in page.get("files", []):
                if item.get("mimeType") == FOLDER:
                    folders.append(item)
                else:
                    found.append({**item, "path": f"{path}{item.get('name', '')}"})
            token = page.get("nextPageToken")
            if not token:
                break
        for folder in folders:
            found += await self.list_folder(folder["id"], True, page_size, f"{path}{folder.get('name', '')}/")
        return found

    async def download(self, file: dict[str, Any], directory: Path, chunk_bytes: int = 8 << 20) -> Path:
        """Stream the file to `directory` (chunk by chunk, never whole in memory); returns its path.
        A finished download (size and md5 as Drive says) is not fetched again."""
        from googleapiclient.http import MediaIoBaseDownload

        directory.mkdir(parents=True, exist_ok=True)
        target = download_path(file, directory).resolve()
        if target.parent != directory.resolve():
            raise ValueError(f"unsafe file name {file.get('name')!r}")
        if target.exists() and _complete(target, file):
            return target
        partial = target.with_name(target.name + ".part")
        with open(partial, "wb") as handle:
            media = self._service().files().get_media(fileId=file["id"])
            media.http = self._http()  # this download's own connection, whichever thread runs a chunk
            request, done = MediaIoBaseDownload(handle, media, chunksize=chunk_bytes), False
            while not done:
                _, done = await self._call(lambda s: request.next_chunk)
        os.replace(partial, target)
        return target


def _complete(path: Path, file: dict[str, Any]) -> bool:
    if file.get("size") and path.stat().st_size != int(file["size"]):
        return False
    if file.get("md5Checksum"):
        digest = hashlib.md5()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest() == file["md5Checksum"]
    return True
