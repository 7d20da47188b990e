"""``POST /v1/runs``: accept a run request and its files into the workspace.

The body is multipart/form-data with one ``request`` field (a JSON object) and
zero or more ``files`` file parts. The body is parsed as it streams in, with
python-multipart's low-level parser, and file data goes straight to disk:

    <workspace>/.incoming-<id>/request.json
    <workspace>/.incoming-<id>/files/<name>

Only when everything is valid is the staging directory renamed to
``<workspace>/<id>`` (atomic: same file system). On any failure the staging
directory is removed, so nothing is left behind.

File names are validated, never sanitized: a name that is empty, absolute, has a
path separator (``/`` or ``\\``), is ``.`` or ``..``, has a NUL or another
control character, or is longer than 255 bytes is rejected with 400. The
``Content-Disposition`` header is parsed here rather than by python-multipart,
whose parser silently strips Windows-style paths from file names.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any, BinaryIO

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from stigmer_agent_runner import multipart_compat
from stigmer_agent_runner.config import Config

log = logging.getLogger(__name__)

REQUEST_FIELD = "request"
FILES_FIELD = "files"
MAX_FILES = 1000
MAX_NAME_BYTES = 255  # NAME_MAX on Linux file systems
STAGING_PREFIX = ".incoming-"
_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:[\\/]")


class UploadError(Exception):
    """A request problem, answered with ``status`` and a JSON error ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


# --- header parameters -------------------------------------------------------


def parse_header_params(raw: bytes, header: str) -> tuple[str, dict[str, str]]:
    """Parse ``value; key=token; key="quoted"`` (Content-Type, Content-Disposition).

    Returns the lower-cased value and the parameters (lower-cased keys). Inside
    quoted strings only ``\\"`` and ``\\\\`` are escapes; any other backslash is
    kept as is, so a Windows path stays visible to the file name check.
    Duplicate parameters are rejected (two file names would be ambiguous).
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UploadError(400, f"{header} header is not valid UTF-8") from None
    malformed = UploadError(400, f"malformed {header} header")
    value, sep, rest = text.partition(";")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while sep and i < n:
        while i < n and rest[i] in " \t;":
            i += 1
        if i >= n:
            break
        eq = i
        while eq < n and rest[eq] not in "=;":
            eq += 1
        key = rest[i:eq].strip().lower()
        if not key or eq >= n or rest[eq] != "=":
            raise malformed
        i = eq + 1
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] == '"':
            i += 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise malformed  # unterminated quoted string
                c = rest[i]
                if c == "\\" and i + 1 < n and rest[i + 1] in '"\\':
                    chars.append(rest[i + 1])
                    i += 2
                elif c == '"':
                    i += 1
                    break
                else:
                    chars.append(c)
                    i += 1
            val = "".join(chars)
            while i < n and rest[i] in " \t":
                i += 1
            if i < n and rest[i] != ";":
                raise malformed
        else:
            end = rest.find(";", i)
            end = n if end < 0 else end
            val = rest[i:end].strip()
            i = end
        if key in params:
            raise UploadError(400, f"{header} header has parameter {key!r} more than once")
        params[key] = val
    return value.strip().lower(), params


# --- file names --------------------------------------------------------------


def file_name_problem(name: str) -> str | None:
    """What is wrong with ``name`` as a plain file name, or None if it is fine."""
    if name == "":
        return "file name is empty"
    if "\x00" in name:
        return "file name contains a NUL byte"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return "file name contains a control character"
    if name[0] in "/\\" or _WINDOWS_DRIVE.match(name):
        return "absolute paths are not allowed"
    if name in (".", ".."):
        return f"{name!r} is not a file name"
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        return "'..' path components are not allowed"
    if len(parts) > 1:
        return "path separators ('/' or '\\') are not allowed"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return f"file name is longer than {MAX_NAME_BYTES} bytes"
    return None


def validate_file_name(name: str) -> None:
    problem = file_name_problem(name)
    if problem is not None:
        raise UploadError(400, f"invalid file name {name!r}: {problem}")


# --- streaming form handling -------------------------------------------------


class RunForm:
    """Callbacks for python-multipart's ``MultipartParser``.

    They run in a worker thread (the parser is fed through ``run_in_threadpool``)
    so that file writes never block the event loop.
    """

    def __init__(self, files_dir: Path, max_files: int = MAX_FILES) -> None:
        self.files_dir = files_dir
        self.max_files = max_files
        self.file_names: list[str] = []
        self.request_body: bytes | None = None
        self.ended = False
        self._seen_names: set[str] = set()
        self._request_seen = False
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._kind: str | None = None
        self._buffer = bytearray()
        self._file: BinaryIO | None = None
        self._file_name = ""

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self._headers = []
        self._header_name.clear()
        self._header_value.clear()
        self._kind = None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers.append((bytes(self._header_name).strip().lower(), bytes(self._header_value).strip()))
        self._header_name.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        dispositions = [v for k, v in self._headers if k == b"content-disposition"]
        if len(dispositions) != 1:
            raise UploadError(400, "each multipart part needs exactly one Content-Disposition header")
        kind, params = parse_header_params(dispositions[0], "Content-Disposition")
        if kind != "form-data":
            raise UploadError(400, f"multipart part has disposition {kind!r}, expected 'form-data'")
        if "filename*" in params:
            raise UploadError(400, "the filename* parameter is not supported (RFC 7578): use filename")
        name = params.get("name")
        if name is None:
            raise UploadError(400, "a multipart part has no field name")
        if name == REQUEST_FIELD:
            if self._request_seen:
                raise UploadError(400, f"form field {REQUEST_FIELD!r} was sent more than once")
            self._request_seen = True
            self._kind = "request"
            self._buffer = bytearray()
        elif name == FILES_FIELD:
            filename = params.get("filename")
            if filename is None:
                raise UploadError(400, f"form field {FILES_FIELD!r} must be a file upload with a filename")
            validate_file_name(filename)
            if filename in self._seen_names:
                raise UploadError(400, f"duplicate file name {filename!r}")
            if len(self._seen_names) >= self.max_files:
                raise UploadError(400, f"too many files: at most {self.max_files} per run")
            self._file = self._create(filename)
            self._file_name = filename
            self._seen_names.add(filename)
            self._kind = "file"
        else:
            raise UploadError(
                400, f"unexpected form field {name!r}: expected {REQUEST_FIELD!r} and {FILES_FIELD!r}"
            )

    def _create(self, filename: str) -> BinaryIO:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.files_dir / filename, flags, 0o644)
        except FileExistsError:
            # Same name up to case on a case-insensitive file system.
            raise UploadError(400, f"duplicate file name {filename!r}") from None
        except OSError as exc:
            if exc.errno in (errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ):
                raise UploadError(400, f"invalid file name {filename!r}: {exc.strerror}") from None
            raise
        return os.fdopen(fd, "wb")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._kind == "request":
            self._buffer += data[start:end]
        elif self._kind == "file":
            assert self._file is not None
            self._file.write(data[start:end])

    def on_part_end(self) -> None:
        if self._kind == "request":
            self.request_body = bytes(self._buffer)
            self._buffer = bytearray()
        elif self._kind == "file":
            assert self._file is not None
            self._file.close()
            self._file = None
            self.file_names.append(self._file_name)
        self._kind = None

    def on_end(self) -> None:
        self.ended = True

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_request_document(body: bytes | None) -> dict[str, Any]:
    if body is None:
        raise UploadError(400, f"missing form field {REQUEST_FIELD!r} (a JSON object)")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise UploadError(400, f"form field {REQUEST_FIELD!r} is not valid UTF-8") from None
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise UploadError(400, f"form field {REQUEST_FIELD!r} is nested too deeply") from None
    except ValueError as exc:
        raise UploadError(400, f"form field {REQUEST_FIELD!r} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
            type(document), "a number"
        )
        raise UploadError(400, f"form field {REQUEST_FIELD!r} must be a JSON object, got {kind}")
    return document


# --- filesystem steps (run in a worker thread) --------------------------------


def _make_staging(staging: Path) -> None:
    os.mkdir(staging)
    os.mkdir(staging / "files")


def _commit(staging: Path, final: Path, document: dict[str, Any]) -> None:
    with open(staging / "request.json", "x", encoding="utf-8") as fh:
        json.dump(document, fh, ensure_ascii=False, indent=2)
        fh.write("\n")
    os.rename(staging, final)


def _remove(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


# --- the endpoint ------------------------------------------------------------


async def create_run(request: Request) -> Response:
    config: Config = request.app.state.config
    limit = config.max_upload_bytes

    raw_type = request.headers.get("content-type", "")
    media_type = raw_type.partition(";")[0].strip().lower()
    if media_type != "multipart/form-data":
        return error_response(415, f"Content-Type must be multipart/form-data, got {media_type or 'none'!r}")
    try:
        _, params = parse_header_params(raw_type.encode("latin-1"), "Content-Type")
    except UploadError as exc:
        return error_response(exc.status, exc.message)
    boundary = params.get("boundary", "")
    if not 1 <= len(boundary) <= 70 or not boundary.isascii():
        return error_response(400, "multipart/form-data needs a boundary parameter of 1 to 70 ASCII characters")

    content_length = request.headers.get("content-length")
    if content_length is not None:
        if not content_length.isdigit():
            return error_response(400, "invalid Content-Length header")
        if int(content_length) > limit:
            return error_response(413, f"request body is larger than the limit of {limit} bytes")

    if not multipart_compat.available():
        return error_response(503, f"multipart support is unavailable: {multipart_compat.import_error}")

    run_id = uuid.uuid4().hex
    staging = config.workspace / f"{STAGING_PREFIX}{run_id}"
    try:
        await run_in_threadpool(_make_staging, staging)
    except OSError as exc:
        log.error("workspace not writable", extra={"workspace": str(config.workspace), "error": exc.strerror})
        await run_in_threadpool(_remove, staging)
        return error_response(503, f"workspace not writable: {exc.strerror or exc}")

    form = RunForm(staging / "files")
    received = 0
    committed = False
    try:
        parser = multipart_compat.MultipartParser(boundary.encode("ascii"), form.callbacks())
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise UploadError(413, f"request body is larger than the limit of {limit} bytes")
            if chunk:
                await run_in_threadpool(parser.write, chunk)
        if not form.ended:
            raise UploadError(400, "multipart body is incomplete: the closing boundary is missing")
        document = parse_request_document(form.request_body)
        await run_in_threadpool(_commit, staging, config.workspace / run_id, document)
        committed = True
    except UploadError as exc:
        log.info("run rejected", extra={"status": exc.status, "reason": exc.message})
        return error_response(exc.status, exc.message)
    except multipart_compat.FormParserError as exc:
        log.info("run rejected", extra={"status": 400, "reason": f"malformed multipart body: {exc}"})
        return error_response(400, f"malformed multipart body: {exc}")
    except ClientDisconnect:
        log.info("run aborted: client disconnected", extra={"bytes": received})
        return Response(status_code=400)
    except OSError as exc:
        log.exception("could not store run", extra={"run_id": run_id})
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return error_response(507, "workspace is full")
        return error_response(500, f"could not store the run: {exc.strerror or exc.__class__.__name__}")
    finally:
        form.close()
        if not committed:
            # Synchronous on purpose: this also runs when the task is cancelled.
            _remove(staging)

    log.info("run created", extra={"run_id": run_id, "files": len(form.file_names), "bytes": received})
    return JSONResponse({"id": run_id, "files": form.file_names}, status_code=201)
