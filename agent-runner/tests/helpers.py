"""Helpers shared by the tests: raw multipart bodies and a direct ASGI driver."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
