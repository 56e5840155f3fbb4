"""Google Drive v3 (api_endpoint `{url}/drive/v3/`): files.list and files.get (metadata, or alt=media with Range).

The drive is the directory tree at setting `drive_root` (a folder in 'root'; ids are `drive_id(path)`) plus the
files added by `POST /_emulator/drive/files`, whose names may be anything Drive allows. Errors and the rate
limit (`drive_rate_limit_status`/`_reason`, default 403 userRateLimitExceeded) come in Google's shape.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import mimetypes
import os
import re
import time
from collections import ChainMap
from http import HTTPStatus

from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from emulators.faults import ApiFaults, Rejection
from emulators.http import bearer_key, guarded, json_body

NAME = "drive"
COUNTERS = ("list_calls", "get_calls", "media_calls", "bytes_sent")
FOLDER = "application/vnd.google-apps.folder"
LIST_FIELDS = {"kind", "nextPageToken", "incompleteSearch", "files"}
FILE_FIELDS = {"kind", "id", "name", "mimeType", "parents", "size", "md5Checksum", "modifiedTime", "createdTime",
               "trashed"}
BASIC = {"kind": None, "id": None, "name": None, "mimeType": None}  # Drive v3's file fields when none are asked
CHUNK = 256 * 1024
RANGE = re.compile(r"bytes=(\d*)-(\d*)")
STRING = r"'((?:[^'\\]|\\.)*)'"
TOKEN = re.compile(  # a keyword or parenthesis, or one clause of q
    rf"\s*(?:([()]|(?i:and|or|not)\b)|{STRING}\s+in\s+parents|trashed\s*(!?=)\s*(true|false)|"
    rf"(name|mimeType)\s*(=|!=|\scontains\s)\s*{STRING})")
RATE_MESSAGES = {"userRateLimitExceeded": "User Rate Limit Exceeded", "rateLimitExceeded": "Rate Limit Exceeded"}
ORDER_KEYS = {"name": lambda f: f["name"].casefold(), "modifiedTime": lambda f: f["modifiedTime"],
              "createdTime": lambda f: f["createdTime"], "folder": lambda f: f["mimeType"] != FOLDER}


def google_error(status: int, reason: str, message: str, location: str | None = None, domain: str = "global",
                 where: str = "parameter", headers: dict | None = None) -> Rejection:
    error = {"domain": domain, "reason": reason, "message": message}
    if location:
        error.update(locationType=where, location=location)
    return Rejection(status, {"error": {"code": status, "message": message, "errors": [error]}}, headers)


def invalid(location: str, message: str = "Invalid Value", reason: str = "invalid") -> Rejection:
    return google_error(400, reason, message, location)


def drive_id(path: str) -> str:
    """The stable id of a local file or folder served through `drive_root`."""
    return _id("path:" + os.path.abspath(path))


def _id(text: str) -> str:
    return "1" + base64.urlsafe_b64encode(hashlib.sha256(text.encode(errors="surrogateescape")).digest()).decode()[:32]


def new_file(file_id: str, name: str, mime: str, parents: list, mtime: float, size: int | None = None,
             trashed: bool = False, **source) -> dict:
    """A file resource; `source` keys ("_path", "_content": where the bytes are) start with "_", never served."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(mtime)) + f".{int(mtime % 1 * 1000):03d}Z"
    file = {"kind": "drive#file", "id": file_id, "name": name, "mimeType": mime, "parents": parents,
            "createdTime": stamp, "modifiedTime": stamp, "trashed": trashed, **source}
    if size is not None:
        file["size"] = str(size)
    return file


def scan(root: str) -> dict[str, dict]:
    """Every folder and file under `root` by id (sizes and times from disk; md5 later, when asked for)."""
    root, files = os.path.abspath(root), {}
    if not os.path.isdir(root):
        raise google_error(500, "backendError", f"drive_root {root!r} is not a directory")
    for here, folders, names in os.walk(root):
        folders.sort()
        for path in [here, *(os.path.join(here, name) for name in sorted(names))]:
            name = os.path.basename(path).encode(errors="surrogateescape").decode(errors="replace")  # as UTF-8
            stat, parent = os.stat(path), "root" if path == root else drive_id(os.path.dirname(path))
            mime = FOLDER if path == here else mimetypes.guess_type(name)[0] or "application/octet-stream"
            files[drive_id(path)] = new_file(drive_id(path), name, mime, [parent], stat.st_mtime,
                                             None if path == here else stat.st_size, _path=path)
    return files


def drive(faults: ApiFaults) -> ChainMap:
    """Every file by id: the files added, then the tree at `drive_root` (scanned once per root and reset)."""
    memory, root = faults.memory, faults.settings.drive_root
    if "scanned" not in memory or memory["root"] != root:
        memory["root"], memory["scanned"] = root, scan(root) if root else {}
    return ChainMap(memory.setdefault("added", {}), memory["scanned"])


def read(file: dict, start: int, end: int):
    """The bytes [start, end) of a file in chunks: from disk, from memory, or generated PDF-like filler."""
    if "_path" in file:
        with open(file["_path"], "rb") as disk:
            disk.seek(start)
            while start < end and (chunk := disk.read(min(CHUNK, end - start))):
                start += len(chunk)
                yield chunk
        return
    data = file["_content"] if "_content" in file else (
        b"%PDF-1.4\n" + hashlib.sha256(file["id"].encode()).hexdigest().encode() * 1024)[:65536]
    while start < end:
        chunk = data[start % len(data):][:min(CHUNK, end - start)]
        start += len(chunk)
        yield chunk


async def fill_md5(files: list[dict]) -> None:
    """Compute, once, the md5Checksum of files with content: read in a thread, stored on the event loop."""
    def md5(file: dict) -> str:
        digest = hashlib.md5()
        for chunk in read(file, 0, int(file["size"])):
            digest.update(chunk)
        return digest.hexdigest()

    todo = [file for file in files if "size" in file and "md5Checksum" not in file]
    for file, digest in zip(todo, await asyncio.to_thread(lambda: [md5(file) for file in todo])):
        file["md5Checksum"] = digest


def parse_query(q: str):
    """A predicate for Drive's `q` (the clauses in TOKEN, with and/or/not and parentheses); else Google's 400."""
    tests, code, pos, q = [], [], 0, q.strip()
    while pos < len(q):
        if not (match := TOKEN.match(q, pos)):
            raise invalid("q")
        word, parent, equal, flag, field, op, value = (re.sub(r"\\(.)", r"\1", g) if g else g for g in match.groups())
        pos = match.end()
        if word:
            code.append(word.lower())
            continue
        if parent is not None:
            tests.append(lambda file, parent=parent: parent in file["parents"])
        elif flag:
            tests.append(lambda file, wanted=(flag == "true") == (equal == "="): file["trashed"] == wanted)
        elif op.strip() == "contains":
            tests.append(lambda file, field=field, value=value: value in file[field] if field == "mimeType"
                         else name_contains(file[field], value))
        else:
            tests.append(lambda file, field=field, value=value, op=op: (file[field] == value) == (op == "="))
        code.append(f"t[{len(tests) - 1}](f)")
    try:  # Python's and/or/not over the clauses: the code holds nothing else
        return eval(f"lambda f: ({' '.join(code) or 'True'})", {"__builtins__": {}, "t": tests})
    except SyntaxError:
        raise invalid("q") from None


def name_contains(name: str, value: str) -> bool:
    """Drive's `name contains`: a case-insensitive prefix of the name or of a word in it ('World' misses
    'HelloWorld', matches 'Hello World')."""
    name, value = name.casefold(), value.casefold()
    return any(name.startswith(value, i) for i in range(len(name))
               if i == 0 or name[i - 1].isalnum() != name[i].isalnum())


def parse_fields(text: str | None, known: set[str], default: dict) -> dict:
    """`nextPageToken,files(id,name)` -> {"nextPageToken": None, "files": {"id": None, "name": None}}; None: all."""
    as_json = re.sub(r"(\w+|\*)\s*(\(?)", lambda m: f'"{m[1]}":' + ("{" if m[2] else "null"), text or "")
    try:
        return check(json.loads("{" + as_json.replace(")", "}") + "}"), known) if text else default
    except ValueError:
        raise invalid("fields", "Invalid field selection", "invalidParameter") from None


def check(tree: dict | None, known: set[str]) -> dict | None:
    """`tree`, unless it names a field outside `known`: Google's 400 on fields."""
    if unknown := set(tree or ()) - known - {"*"}:
        raise invalid("fields", f"Invalid field selection {sorted(unknown)[0]}", "invalidParameter")
    return tree


def select(item: dict, tree: dict | None) -> dict:
    """The served fields of `item` that `tree` asks for."""
    item = {key: value for key, value in item.items() if not key.startswith("_")}
    return item if tree is None or "*" in tree else {key: item[key] for key in tree if key in item}


def wants(tree: dict | None, field: str) -> bool:
    return tree is None or "*" in tree or field in tree


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, end) of a single `bytes=a-b` (or `a-`, `-n`) range; None (the whole file) otherwise."""
    match = RANGE.fullmatch((header or "").replace(" ", ""))
    if not match or match.groups() == ("", "") or (all(match.groups()) and int(match[2]) < int(match[1])):
        return None
    first, last = match.groups()
    return (max(0, size - int(last)), size) if not first else (int(first), min(size, int(last) + 1) if last else size)


def page_offset(token: str, query: str) -> int:
    """Where a nextPageToken issued for this query points, or Google's 400 on pageToken."""
    try:
        offset, issued_for = json.loads(base64.urlsafe_b64decode(token))
    except (ValueError, TypeError):
        raise invalid("pageToken") from None
    if issued_for != query or not isinstance(offset, int) or offset < 0:
        raise invalid("pageToken")
    return offset


def routes(faults: ApiFaults) -> list[Route]:
    def google_shape(rejection: Rejection) -> Rejection:
        """The fault gate's failures as Drive answers them."""
        settings, status = faults.settings, rejection.status
        if status == 429:
            reason = settings.drive_rate_limit_reason
            return google_error(settings.drive_rate_limit_status, reason, RATE_MESSAGES.get(reason, reason),
                                domain="usageLimits")
        if status == 401:
            return google_error(401, "authError", "Invalid Credentials", "Authorization", where="header")
        return google_error(status, "backendError", "Backend Error" if status == 500 else HTTPStatus(status).phrase)

    async def list_files(request: Request):
        params = request.query_params

        async def answer():
            faults.counters["list_calls"] += 1
            tree = parse_fields(params.get("fields"), LIST_FIELDS, {
                "kind": None, "incompleteSearch": None, "nextPageToken": None, "files": BASIC})
            files_tree = check(None if "*" in tree else tree.get("files"), FILE_FIELDS)
            q, order, size = params.get("q", ""), params.get("orderBy", ""), params.get("pageSize", "100")
            if not size.isdigit() or not 1 <= int(size) <= 1000:
                raise invalid("pageSize", f"Invalid value '{size}'. Values must be within the range: [1, 1000]")
            files, size = drive(faults), int(size)
            version = (q, order, faults.settings.drive_root, len(files.maps[0]))  # files are only ever added
            if faults.memory.get("listed", (None,))[0] != version:  # the pages of a query share one listing
                matches = parse_query(q)
                found = [file for file in files.values() if matches(file)]
                for key in reversed([key.split() for key in order.split(",") if key.strip()]):
                    if key[0] not in ORDER_KEYS or key[1:] not in ([], ["desc"]):
                        raise invalid("orderBy")
                    found.sort(key=ORDER_KEYS[key[0]], reverse=key[1:] == ["desc"])
                faults.memory["listed"] = (version, found)
            found = faults.memory["listed"][1]
            query = hashlib.sha256(f"{q}\0{order}".encode()).hexdigest()[:16]  # page tokens are bound to it
            offset = page_offset(params["pageToken"], query) if params.get("pageToken") else 0
            page = found[offset:offset + size]
            body = select({"kind": "drive#fileList", "incompleteSearch": False}, tree)
            if offset + size < len(found) and wants(tree, "nextPageToken"):
                body["nextPageToken"] = base64.urlsafe_b64encode(json.dumps([offset + size, query]).encode()).decode()
            if wants(tree, "files"):
                if wants(files_tree, "md5Checksum"):
                    await fill_md5(page)
                body["files"] = [select(file, files_tree) for file in page]
            return 200, body

        return await guarded(faults, None, bearer_key(request), answer, on_rejection=google_shape)

    async def get_file(request: Request):
        file_id, params, generation = request.path_params["file_id"], request.query_params, faults.generation
        media, ranged = params.get("alt") == "media", request.headers.get("range")

        async def stream(file: dict, start: int, end: int):
            chunks = read(file, start, end)
            while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
                if faults.generation == generation:
                    faults.counters["bytes_sent"] += len(chunk)
                yield chunk

        async def answer():
            faults.counters["media_calls" if media else "get_calls"] += 1
            if (file := drive(faults).get(file_id)) is None:
                raise google_error(404, "notFound", f"File not found: {file_id}.", "fileId")
            if not media:
                tree = parse_fields(params.get("fields"), FILE_FIELDS, BASIC)
                if wants(tree, "md5Checksum"):
                    await fill_md5([file])
                return 200, select(file, tree)
            if "size" not in file:
                raise google_error(403, "fileNotDownloadable", "Only files with binary content can be downloaded. "
                                   "Use Export with Docs Editors files.", "alt")
            size, span = int(file["size"]), byte_range(ranged, int(file["size"]))
            if span and span[0] >= size:
                raise google_error(416, "requestedRangeNotSatisfiable", "Request range not satisfiable",
                                   headers={"Content-Range": f"bytes */{size}"})
            (start, end), status = span or (0, size), 206 if span else 200
            headers = {"Content-Length": str(end - start), **({"Content-Range": f"bytes {start}-{end - 1}/{size}"}
                                                               if span else {})}
            return status, StreamingResponse(stream(file, start, end), status, headers, file["mimeType"])

        started = not ranged or ranged.replace(" ", "").startswith("bytes=0-")  # by_key: downloads started
        return await guarded(faults, file_id if media and started else None, bearer_key(request), answer,
                             on_rejection=google_shape)

    async def add_files(request: Request):
        """Control route: add a file, or a list of them; answers {"files": [their resources]}."""
        body = await json_body(request)
        try:
            added = [add(drive(faults), spec) for spec in (body if isinstance(body, list) else [body])]
        except Rejection as rejection:  # drive_root is not a directory
            return JSONResponse(rejection.body, status_code=rejection.status)
        except (LookupError, OSError, TypeError, ValueError) as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        return JSONResponse({"files": [select(file, None) for file in added]})

    def add(files: ChainMap, spec: dict) -> dict:
        name, parents = spec["name"], spec.get("parents", ["root"])
        file_id = spec.get("id") or _id(f"added:{len(files.maps[0])}")
        if not isinstance(name, str) or file_id in files or any(
                p != "root" and files.get(p, {}).get("mimeType") != FOLDER for p in parents):
            raise ValueError(f"{spec}: a string name, a new id and folders (or 'root') as parents are needed")
        mime = spec.get("mimeType") or mimetypes.guess_type(name)[0] or "application/octet-stream"
        if "path" in spec:
            source = {"_path": spec["path"], "size": os.path.getsize(spec["path"])}
        elif "content" in spec:
            source = {"_content": spec["content"].encode(), "size": len(spec["content"].encode())}
        else:
            source = {} if mime == FOLDER else {"size": int(spec.get("size", 0))}
        files.maps[0][file_id] = new_file(file_id, name, mime, list(parents), spec.get("mtime", time.time()),
                                          trashed=bool(spec.get("trashed")), **source)
        return files.maps[0][file_id]

    return [Route("/drive/v3/files", list_files), Route("/drive/v3/files/{file_id}", get_file),
            Route("/_emulator/drive/files", add_files, methods=["POST"])]
