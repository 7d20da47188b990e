"""``POST /v1/runs``: accept a run request and its files into the workspace.

The body is multipart/form-data with one ``request`` field (a JSON object) and
zero or more ``files`` file parts. The body is parsed as it streams in, with
python-multipart's low-level parser, and file data goes straight to disk:

    <workspace>/.incoming-<id>/request.json
    <workspace>/.incoming-<id>/files/<name>

Only when everything is valid, and written and synced, is the staging directory
renamed to ``<workspace>/<id>`` (atomic: same file system). On any failure the
staging directory is removed, so nothing is left behind. ``request.json`` holds the
bytes of the ``request`` field exactly as accepted: never more than
:data:`MAX_REQUEST_BYTES`, and only once they are known to be strict JSON.

File names are validated, never sanitized (:func:`file_name_problem` says which are
allowed). The ``Content-Disposition`` header is parsed here rather than by
python-multipart, whose parser silently strips Windows-style paths from file names.

Every file system step runs in a worker thread, one step at a time per upload; the
event loop never waits for the disk and never removes a staging directory that a
step is still writing into (:class:`Upload`). This module must not wait for a
client without a deadline: each body read has the client timeout, and shutdown
(:class:`Shutdown`) ends every upload that is still receiving.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import math
import os
import re
import shutil
import threading
import unicodedata
import uuid
from collections.abc import Callable
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
#: The ``request`` field is metadata (agent, prompt, options); bulk data goes in files.
#: Parsing JSON takes up to ~25 times its size in memory, so this bounds that too.
MAX_REQUEST_BYTES = 256 * 1024
MAX_JSON_DEPTH = 64
STAGING_PREFIX = ".incoming-"
SHUTTING_DOWN = "the server is shutting down: send the run again"
_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:[\\/]")
#: One request document parsed at a time: that bounds the memory it takes, and the
#: time the event loop waits for the GIL (json's C parser holds it throughout).
_parsing = threading.BoundedSemaphore(1)


class UploadError(Exception):
    """A request problem, answered with ``status`` and a JSON error ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str, close: bool = False) -> JSONResponse:
    headers = {"Connection": "close"} if close else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


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

#: Unicode general categories (first letter) a file name may use: letters, marks,
#: numbers, punctuation and symbols, plus U+0020 SPACE itself. That leaves out control
#: characters (Cc, C0 and C1), format characters (Cf: bidi overrides, zero-width
#: characters, the BOM, soft hyphen), surrogates, private-use and unassigned code
#: points, and every separator but the plain space (line and paragraph separators,
#: no-break and other spaces).
ALLOWED_CATEGORIES = "LMNPS"
_CATEGORY_NAMES = {
    "Cc": "a control character",
    "Cf": "a format character",
    "Cs": "a surrogate",
    "Co": "a private-use character",
    "Cn": "an unassigned code point",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
    "Zs": "a space other than U+0020",
}


def _path_problem(name: str) -> str | None:
    if name[0] in "/\\" or _WINDOWS_DRIVE.match(name):
        return "absolute paths are not allowed"
    if name in (".", ".."):
        return f"{name!r} is not a file name"
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        return "'..' path components are not allowed"
    if len(parts) > 1:
        return "path separators ('/' or '\\') are not allowed"
    return None


def file_name_problem(name: str) -> str | None:
    """What is wrong with ``name`` as a plain file name, or None if it is fine.

    Every character must be in :data:`ALLOWED_CATEGORIES` (or be a space); the name
    must not be, or contain, a path, neither as sent nor in its NFKC form (where
    fullwidth ``／`` and ``．．`` become ``/`` and ``..``, as they do for any tool
    that normalizes names); at most 255 bytes of UTF-8.
    """
    if name == "":
        return "file name is empty"
    if "\x00" in name:
        return "file name contains a NUL byte"
    for c in name:
        category = unicodedata.category(c)
        if c != " " and category[0] not in ALLOWED_CATEGORIES:
            return f"file name contains U+{ord(c):04X}, {_CATEGORY_NAMES.get(category, category)}"
    problem = _path_problem(name)
    if problem is None:
        normalized = unicodedata.normalize("NFKC", name)
        problem = _path_problem(normalized)
        if problem is not None:
            problem += f" (the name's NFKC form is {normalized!r})"
    if problem is not None:
        return problem
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return f"file name is longer than {MAX_NAME_BYTES} bytes"
    return None


def validate_file_name(name: str) -> None:
    problem = file_name_problem(name)
    if problem is not None:
        raise UploadError(400, f"invalid file name {name!r}: {problem}")


# --- the request document ------------------------------------------------------


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key[:40]!r}")
            seen.add(key)
    return document


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_INNERMOST = re.compile(r"\[\]|\{\}")


def _nested_too_deep(text: str) -> bool:
    """Whether valid JSON ``text`` nests deeper than :data:`MAX_JSON_DEPTH`. Peels the
    innermost bracket pairs once per level: a few passes at C speed, where walking the
    parsed tree in Python takes about a second for a megabyte of ``[],``."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    for _ in range(MAX_JSON_DEPTH):
        if not brackets:
            return False
        brackets = _INNERMOST.sub("", brackets)
    return bool(brackets)


def check_request_document(body: bytes | None) -> None:
    """Accept ``body`` only if it is one strict JSON object: UTF-8, no NaN or
    Infinity, no number too large for a double, no lone surrogate, no duplicate
    key, at most :data:`MAX_JSON_DEPTH` levels. Runs in a worker thread."""
    if body is None:
        raise UploadError(400, f"missing form field {REQUEST_FIELD!r} (a JSON object)")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise UploadError(400, f"form field {REQUEST_FIELD!r} is not valid UTF-8") from None
    with _parsing:
        try:
            document = json.loads(
                text,
                parse_constant=_reject_constant,
                parse_float=_finite_float,
                object_pairs_hook=_object_without_duplicates,
            )
        except RecursionError:
            raise UploadError(400, f"form field {REQUEST_FIELD!r} is nested deeper than {MAX_JSON_DEPTH} levels") from None
        except ValueError as exc:
            raise UploadError(400, f"form field {REQUEST_FIELD!r} is not valid JSON: {exc}") from None
        if not isinstance(document, dict):
            kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
                type(document), "a number"
            )
            raise UploadError(400, f"form field {REQUEST_FIELD!r} must be a JSON object, got {kind}")
        if _nested_too_deep(text):
            raise UploadError(400, f"form field {REQUEST_FIELD!r} is nested deeper than {MAX_JSON_DEPTH} levels")
        # Strict UTF-8 decoding lets no surrogate through, so one in the document came
        # from a \uXXXX escape without its pair: text that no UTF-8 file can hold.
        # Re-encoding finds it at C speed.
        try:
            json.dumps(document, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise UploadError(
                400, f"form field {REQUEST_FIELD!r} has a lone surrogate escape (\\ud800 to \\udfff)"
            ) from None


# --- streaming form handling -------------------------------------------------


class RunForm:
    """Callbacks for python-multipart's ``MultipartParser``.

    They run in a worker thread (see :meth:`Upload.step`) so that file writes never
    block the event loop.
    """

    def __init__(self, files_dir: Path, max_files: int = MAX_FILES) -> None:
        self.files_dir = files_dir
        self.max_files = max_files
        self.file_names: list[str] = []
        self.request_body: bytes | None = None
        self.ended = False
        #: Set from the event loop when the upload is given up: stops a step early.
        self.aborted = False
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
        if self.aborted:
            raise UploadError(503, "the upload was abandoned")
        if self._kind == "request":
            if len(self._buffer) + end - start > MAX_REQUEST_BYTES:
                raise UploadError(413, f"form field {REQUEST_FIELD!r} is larger than {MAX_REQUEST_BYTES} bytes")
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
            file, self._file = self._file, None
            with file:
                file.flush()
                os.fsync(file.fileno())
            self.file_names.append(self._file_name)
        self._kind = None

    def on_end(self) -> None:
        self.ended = True

    def discard(self) -> None:
        """Close a half-written file. The upload has failed already: a second error
        from flushing it (a full disk again) must not hide the first."""
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError:
                pass


# --- filesystem steps (run in a worker thread) --------------------------------


def _make_staging(staging: Path) -> None:
    os.mkdir(staging)
    os.mkdir(staging / "files")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


class Upload:
    """One upload's staging directory and the worker-thread steps that write into it.

    Steps run one at a time. :meth:`abandon` (on the event loop, also when the request
    task is cancelled and cannot wait) removes the directory at once if no step is
    running, or else leaves that to the running step, which stops at its next write
    and removes it as it ends: the directory never disappears under a thread.
    """

    def __init__(self, staging: Path) -> None:
        self.staging = staging
        self.form = RunForm(staging / "files")
        self._lock = threading.Lock()
        self._busy = False
        self._abandoned = False

    def commit(self, final: Path) -> None:
        """Check the request, store it as accepted, and move the run into place,
        durably: file contents, then the directories that name them, then the rename
        itself (unless the upload was abandoned meanwhile: then nothing is renamed)."""
        body = self.form.request_body
        check_request_document(body)
        assert body is not None
        fd = os.open(self.staging / "request.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        _fsync_dir(self.staging / "files")
        _fsync_dir(self.staging)
        if self.form.aborted:
            raise UploadError(503, SHUTTING_DOWN)
        os.rename(self.staging, final)
        _fsync_dir(final.parent)

    async def step(self, fn: Callable[..., None], *args: Any) -> None:
        await run_in_threadpool(self._run_step, fn, *args)

    def _run_step(self, fn: Callable[..., None], *args: Any) -> None:
        with self._lock:
            if self._abandoned:
                return
            self._busy = True
        try:
            fn(*args)
        finally:
            with self._lock:
                self._busy = False
                abandoned = self._abandoned
            if abandoned:
                self._clean_up()

    def abandon(self) -> None:
        self.form.aborted = True
        with self._lock:
            self._abandoned = True
            busy = self._busy
        if not busy:
            # Synchronous on purpose: this also runs when the task is cancelled.
            self._clean_up()

    def _clean_up(self) -> None:
        self.form.discard()
        _remove(self.staging)


class Body:
    """Feeds the multipart parser and refuses anything after the closing boundary.

    python-multipart drops such data silently (RFC 2046 lets an epilogue follow), so
    parts sent after the end would be lost without a word; only blank lines may follow
    here. Part data can never contain CRLF, "--" and the boundary, so the first such
    sequence followed by "--" is where the parser ended.
    """

    def __init__(self, parser: Any, form: RunForm, boundary: bytes) -> None:
        self._parser = parser
        self._form = form
        self._close = b"\r\n--" + boundary + b"--"
        # A body may open with the closing delimiter: it has no CRLF before it then.
        self._tail = b"\r\n"

    def feed(self, chunk: bytes) -> None:
        if not self._form.ended:
            self._parser.write(chunk)
            window = self._tail + chunk
            if not self._form.ended:
                self._tail = window[-len(self._close) :]
                return
            end = window.find(self._close)
            chunk = window[end + len(self._close) :] if end >= 0 else b""
        if chunk.strip(b" \t\r\n"):
            raise UploadError(400, "multipart body has data after the closing boundary")


# --- shutdown and the request body -------------------------------------------


class Shutdown:
    """Set by the server when it starts to shut down; uploads still receiving their
    body then stop and answer 503. Not bound to one event loop (the tests run the app
    in several)."""

    def __init__(self) -> None:
        self.started = False
        self._waiters: set[asyncio.Future[None]] = set()

    def begin(self) -> None:
        self.started = True
        for waiter in list(self._waiters):
            if not waiter.done():
                waiter.set_result(None)

    def waiter(self) -> asyncio.Future[None]:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.started:
            waiter.set_result(None)
        else:
            self._waiters.add(waiter)
            waiter.add_done_callback(self._waiters.discard)
        return waiter


async def _receive_chunk(request: Request, shutdown: asyncio.Future[None], timeout: float) -> dict[str, Any]:
    """The next ASGI message of the body, or an UploadError when the client sends
    nothing for ``timeout`` seconds (408) or the server shuts down (503)."""
    receive = asyncio.ensure_future(request.receive())
    try:
        done, _ = await asyncio.wait({receive, shutdown}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not receive.done():
            receive.cancel()
    if receive in done:
        return receive.result()
    if shutdown in done:
        raise UploadError(503, SHUTTING_DOWN)
    raise UploadError(408, f"the request body stalled: no data for {timeout:g} seconds")


# --- the endpoint ------------------------------------------------------------

#: Error answers that end the connection: the client is stalled, or the server is
#: going away, so the rest of its body would never be read.
_CLOSING_STATUSES = (408, 503)


async def create_run(request: Request) -> Response:
    config: Config = request.app.state.config
    shutdown: Shutdown = request.app.state.shutdown
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
    if shutdown.started:
        return error_response(503, SHUTTING_DOWN, close=True)

    run_id = uuid.uuid4().hex
    upload = Upload(config.workspace / f"{STAGING_PREFIX}{run_id}")
    form = upload.form
    received = 0
    committed = False
    stopping = shutdown.waiter()
    try:
        await upload.step(_make_staging, upload.staging)
        parser = multipart_compat.MultipartParser(boundary.encode("ascii"), form.callbacks())
        body = Body(parser, form, boundary.encode("ascii"))
        while True:
            message = await _receive_chunk(request, stopping, config.client_timeout_seconds)
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                raise UploadError(413, f"request body is larger than the limit of {limit} bytes")
            if chunk:
                await upload.step(body.feed, chunk)
            if not message.get("more_body", False):
                break
        if not form.ended:
            raise UploadError(400, "multipart body is incomplete: the closing boundary is missing")
        await upload.step(upload.commit, config.workspace / run_id)
        committed = True
    except UploadError as exc:
        log.info("run rejected", extra={"status": exc.status, "reason": exc.message})
        return error_response(exc.status, exc.message, close=exc.status in _CLOSING_STATUSES)
    except multipart_compat.FormParserError as exc:
        log.info("run rejected", extra={"status": 400, "reason": f"malformed multipart body: {exc}"})
        return error_response(400, f"malformed multipart body: {exc}")
    except ClientDisconnect:
        log.info("run aborted: client disconnected", extra={"bytes": received})
        return Response(status_code=400)
    except asyncio.CancelledError:
        # uvicorn cancels what still runs 1 s into a shutdown (a step stuck on a slow
        # disk): answered like any upload cut off by the shutdown, not with its 500.
        log.warning("run aborted: the server is shutting down", extra={"run_id": run_id})
        return error_response(503, SHUTTING_DOWN, close=True)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            log.warning("run rejected: workspace is full", extra={"workspace": str(config.workspace)})
            return error_response(507, "workspace is full")
        log.exception("could not store run", extra={"run_id": run_id})
        return error_response(503, f"workspace not writable: {exc.strerror or exc.__class__.__name__}")
    finally:
        stopping.cancel()
        if not committed:
            upload.abandon()

    log.info("run created", extra={"run_id": run_id, "files": len(form.file_names), "bytes": received})
    return JSONResponse({"id": run_id, "files": form.file_names}, status_code=201)
