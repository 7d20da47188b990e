"""Slow and idle clients against the real server: a deadline for each request head,
an idle timeout inside a body, keep-alive, and a cap on connections that keeps file
descriptors in reserve. Every loop here is bounded and stays on the loopback."""

from __future__ import annotations

import json
import os
import resource
import socket
import time

import pytest
from helpers import (
    file_part,
    get,
    is_closed_by_peer,
    multipart,
    read_response,
    request_part,
    start_server_process,
    upload_head,
)

TIMEOUT = 0.3


@pytest.fixture(scope="module")
def fast_server(tmp_path_factory):
    """A server with a client timeout of TIMEOUT seconds (so keep-alive is that too)."""
    server = start_server_process(
        tmp_path_factory.mktemp("fast"), {"STIGMER_CLIENT_TIMEOUT_SECONDS": str(TIMEOUT)}
    )
    server.wait_healthy()
    yield server
    server.stop()


def connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def staging_dirs(server) -> list[str]:
    return [p.name for p in server.workspace.iterdir() if p.name.startswith(".incoming-")]


def test_half_sent_request_head_is_closed_after_the_client_timeout(fast_server) -> None:
    server = fast_server
    with connect(server) as sock:
        sock.sendall(b"POST /v1/runs HTTP/1.1\r\nHost: x\r\n")
        start = time.monotonic()
        assert is_closed_by_peer(sock, within=3), "a half-sent head stayed open"
        assert TIMEOUT - 0.05 < time.monotonic() - start < 2


def test_request_head_trickled_on_a_kept_alive_connection_is_closed_at_the_deadline(fast_server) -> None:
    # Each byte resets uvicorn's keep-alive timer; the head deadline does not move.
    server = fast_server
    with connect(server) as sock:
        sock.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock).status == 200
        start = time.monotonic()
        closed = False
        for byte in b"GET /version HTTP/1.1\r\nHost: x\r\nX-Slow: abcdefghijklmnopqrstuvwxyz":
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            if time.monotonic() - start > 3:
                break
            time.sleep(TIMEOUT / 5)
        closed = closed or is_closed_by_peer(sock, within=1)
        assert closed, "a trickled head kept the connection open"
        assert time.monotonic() - start < 2


def test_idle_kept_alive_connection_is_closed(fast_server) -> None:
    server = fast_server
    with connect(server) as sock:
        sock.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock).status == 200
        assert is_closed_by_peer(sock, within=2)


def test_stalled_upload_is_408_and_leaves_no_staging_directory(fast_server) -> None:
    server = fast_server
    body = multipart([request_part(), file_part("a.bin", b"x" * 50_000)])
    with connect(server) as sock:
        sock.sendall(upload_head(len(body)) + body[:20_000])
        deadline = time.monotonic() + 5
        while not staging_dirs(server):
            assert time.monotonic() < deadline, "the upload never started"
            time.sleep(0.01)
        start = time.monotonic()
        response = read_response(sock)
        assert response.status == 408, response
        assert "stalled" in response.json()["error"]
        assert time.monotonic() - start < 2
        assert response.headers.get("connection") == "close"
        assert is_closed_by_peer(sock, within=2)
    assert staging_dirs(server) == []


def test_request_head_over_16_kib_is_refused(fast_server) -> None:
    # h11 buffers at most 16 KiB of an incomplete head (one read can hold more).
    server = fast_server
    with connect(server) as sock:
        sock.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000)
        time.sleep(TIMEOUT / 5)
        sock.sendall(b"\r\n\r\n")
        assert read_response(sock).status == 400
        assert is_closed_by_peer(sock, within=2)


def test_every_connection_busy_gets_503_too_many_connections(start_server) -> None:
    server = start_server(STIGMER_MAX_CONNECTIONS="2", STIGMER_CLIENT_TIMEOUT_SECONDS="30")
    server.wait_healthy()
    body = multipart([request_part(), file_part("a.bin", b"x" * 50_000)])
    busy = [connect(server), connect(server)]
    try:
        for sock in busy:
            sock.sendall(upload_head(len(body)) + body[:10_000])
        deadline = time.monotonic() + 5
        while len(staging_dirs(server)) < 2:
            assert time.monotonic() < deadline, "the uploads never started"
            time.sleep(0.01)
        with connect(server) as extra:
            response = read_response(extra)
        assert response.status == 503
        assert response.json() == {"error": "too many connections: try again shortly"}
        for sock in busy:  # the uploads in flight are not disturbed
            sock.sendall(body[10_000:])
            assert read_response(sock).status == 201
    finally:
        for sock in busy:
            sock.close()


FD_LIMIT = 256
#: What the server makes of FD_LIMIT: (256 - 64 reserved - 4 * 24 backlog) / 2.
FD_LIMITED_CAP = 48


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


@pytest.fixture(scope="module")
def fd_limited_server(tmp_path_factory):
    """A server under `ulimit -n 256` whose clients may take a minute for a head."""
    server = start_server_process(
        tmp_path_factory.mktemp("fd-limited"), {"STIGMER_CLIENT_TIMEOUT_SECONDS": "60"}, preexec_fn=_low_fd_limit
    )
    server.wait_healthy()
    yield server
    server.stop()


def test_idle_connections_never_exhaust_file_descriptors(fd_limited_server) -> None:
    # With `ulimit -n 1024`, 1,030 idle connections once used every descriptor:
    # /healthz timed out and asyncio logged thousands of accept errors a second.
    server = fd_limited_server
    assert json.loads(server.lines[0])["max_connections"] == FD_LIMITED_CAP
    lines_before = len(server.lines)
    idle = []
    try:
        for _ in range(FD_LIMIT + 6):
            sock = connect(server)
            sock.sendall(b"GET")
            idle.append(sock)
            time.sleep(0.001)  # a small listen backlog: no faster than it is accepted
        start = time.monotonic()
        assert get(server.url("/healthz"), timeout=5)[0] == 200
        assert time.monotonic() - start < 1
        fds = len(os.listdir(f"/proc/{server.proc.pid}/fd"))
        assert fds < FD_LIMIT - 32, f"{fds} descriptors open"
        time.sleep(0.5)
        new_lines = server.lines[lines_before:]
        assert len(new_lines) < 10, new_lines[:5]
    finally:
        for sock in idle:
            sock.close()


def test_slowloris_connections_do_not_lock_out_healthz(fd_limited_server) -> None:
    # 400 half-sent heads all stayed open; now the connection cap closes the one
    # that has waited longest for its head whenever a new client needs room.
    server = fd_limited_server
    slow = []
    try:
        for _ in range(100):
            sock = connect(server)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            slow.append(sock)
            time.sleep(0.001)
        start = time.monotonic()
        status, _ = get(server.url("/healthz"), timeout=5)
        assert status == 200
        assert time.monotonic() - start < 1
        open_count = sum(not is_closed_by_peer(sock, within=0.01) for sock in slow)
        assert open_count <= FD_LIMITED_CAP
    finally:
        for sock in slow:
            sock.close()
