"""Helpers shared by the tests: raw multipart bodies, a direct ASGI driver, and the real
server (``python -m stigmer_agent_runner`` in a subprocess, on a loopback port)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

BOUNDARY = "stigmer-test-boundary-7f3a"


@dataclass
class Part:
    """One multipart part. ``filename`` is put into the header verbatim (raw)."""

    name: str
    data: bytes = b""
    filename: str | None = None
    disposition: bytes | None = None  # overrides the whole Content-Disposition value

    def encode(self) -> bytes:
        if self.disposition is not None:
            disposition = self.disposition
        else:
            disposition = f'form-data; name="{self.name}"'.encode()
            if self.filename is not None:
                disposition += b'; filename="' + self.filename.encode("utf-8", "surrogatepass") + b'"'
        head = b"Content-Disposition: " + disposition + b"\r\n"
        if self.filename is not None:
            head += b"Content-Type: application/octet-stream\r\n"
        return head + b"\r\n" + self.data


def multipart(parts: Iterable[Part], boundary: str = BOUNDARY, close: bool = True) -> bytes:
    b = boundary.encode()
    body = b"".join(b"--" + b + b"\r\n" + part.encode() + b"\r\n" for part in parts)
    if close:
        body += b"--" + b + b"--\r\n"
    return body


def request_part(document: Any = None, raw: bytes | None = None) -> Part:
    if raw is None:
        raw = json.dumps({"agent": "coder", "prompt": "hello"} if document is None else document).encode()
    return Part("request", raw)


def file_part(filename: str, data: bytes = b"content") -> Part:
    return Part("files", data, filename=filename)


CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def post_run(client: TestClient, body: bytes, content_type: str = CONTENT_TYPE, **headers: str):
    return client.post("/v1/runs", content=body, headers={"content-type": content_type, **headers})


def workspace_entries(workspace: Path) -> list[str]:
    return sorted(p.name for p in workspace.iterdir())


def call_asgi(app, method: str, path: str, headers: Mapping[str, str], chunks: Iterable[bytes],
              disconnect: bool = False) -> tuple[int, bytes]:
    """Drive the ASGI app directly, sending the body in separate chunks without
    Content-Length (as a chunked upload does), optionally disconnecting early."""

    async def run() -> tuple[int, bytes]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
            "client": ("127.0.0.1", 12345),
            "server": ("testserver", 80),
        }
        pending = list(chunks)
        status = 0
        body = bytearray()

        async def receive():
            if pending:
                chunk = pending.pop(0)
                more = bool(pending) or disconnect
                return {"type": "http.request", "body": chunk, "more_body": more}
            return {"type": "http.disconnect"}

        async def send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))

        await app(scope, receive, send)
        return status, bytes(body)

    return asyncio.run(run())


# --- the real server -----------------------------------------------------------

STARTUP_DEADLINE = 20.0  # seconds; polling stops as soon as the server answers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STIGMER_", "OPENAI_", "ANTHROPIC_", "GEMINI_"))}
    env.update(extra)
    return env


def get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, workspace: Path) -> None:
        self.proc = proc
        self.port = port
        self.workspace = workspace
        self.lines: list[str] = []
        self.stderr_text = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def wait_healthy(self) -> dict:
        deadline = time.monotonic() + STARTUP_DEADLINE
        last: object = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited early with {self.proc.returncode}: {self.lines}")
            try:
                status, body = get(f"http://127.0.0.1:{self.port}/healthz")
                if status == 200:
                    return json.loads(body)
                last = (status, body)
            except OSError as exc:
                last = exc
            time.sleep(0.05)
        pytest.fail(f"server not healthy within {STARTUP_DEADLINE}s: {last!r}; output: {self.lines}")

    def wait_serving(self) -> None:
        """Until the server answers at all (/healthz may be 503 on purpose)."""
        deadline = time.monotonic() + STARTUP_DEADLINE
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited early with {self.proc.returncode}: {self.lines}")
            try:
                get(self.url("/version"))
                return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"server not serving within {STARTUP_DEADLINE}s; output: {self.lines}")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        """Kill the server if it still runs; then ``lines`` and ``stderr_text`` are
        complete."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._reader.join(5)
        if self.proc.stderr is not None and not self.proc.stderr.closed:
            self.stderr_text = self.proc.stderr.read().decode("utf-8", "replace")
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def start_server_process(
    root: Path, env: Mapping[str, str], preexec_fn=None, wrapper: Iterable[str] = ()
) -> Server:
    """``python -m stigmer_agent_runner`` on a free loopback port, run through
    ``wrapper`` (such as strace) if given."""
    port = free_port()
    workspace = root / "workspace"
    workspace.mkdir(exist_ok=True)
    settings = {
        "STIGMER_AGENT_RUNNER_PORT": str(port),
        "STIGMER_AGENT_RUNNER_HOST": "127.0.0.1",
        "STIGMER_WORKSPACE": str(workspace),
        "PYTHONUNBUFFERED": "1",
    }
    settings.update(env)
    proc = subprocess.Popen(
        [*wrapper, sys.executable, "-m", "stigmer_agent_runner"],
        env=child_env(**settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=root,
        preexec_fn=preexec_fn,
    )
    return Server(proc, port, Path(settings["STIGMER_WORKSPACE"]))


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def read_response(sock: socket.socket) -> RawResponse:
    """Read one response (Content-Length framed, as all of ours are) from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict((k.strip().lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:]))
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return RawResponse(int(lines[0].split()[1]), headers, body[:length])


def upload_head(length: int | None, boundary: str = BOUNDARY) -> bytes:
    head = f"POST /v1/runs HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
    if length is not None:
        head += f"Content-Length: {length}\r\n"
    return (head + "\r\n").encode()


def post_raw(port: int, body: bytes, piece: int | None = None, pause: float = 0.0, timeout: float = 20.0) -> RawResponse:
    """POST ``body`` to /v1/runs over a plain socket, in ``piece``-byte writes with
    ``pause`` seconds between them (so the server sees them as separate reads)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(upload_head(len(body)))
        try:
            step = piece or len(body) or 1
            for i in range(0, len(body), step):
                sock.sendall(body[i : i + step])
                if pause:
                    time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early; the answer is still there to read
        return read_response(sock)


def peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def is_closed_by_peer(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` within ``within`` seconds (data sent before
    the close, such as an error response, is read and dropped)."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True
    return True
