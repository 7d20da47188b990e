"""The container probe, against small real HTTP servers."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator

import pytest

from stigmer_agent_runner import healthcheck


def serve(status: int) -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - stdlib API
            body = b"{}"
            self.send_response(status if self.path == "/healthz" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def healthy_port() -> Iterator[int]:
    yield from serve(200)


@pytest.fixture
def unhealthy_port() -> Iterator[int]:
    yield from serve(503)


def test_exit_0_when_healthy(healthy_port: int, monkeypatch) -> None:
    monkeypatch.setenv("STIGMER_AGENT_RUNNER_PORT", str(healthy_port))
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # must be ignored
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    assert healthcheck.main() == 0


def test_exit_1_when_unhealthy(unhealthy_port: int, monkeypatch, capsys) -> None:
    monkeypatch.setenv("STIGMER_AGENT_RUNNER_PORT", str(unhealthy_port))
    assert healthcheck.main() == 1
    assert "HTTP 503" in capsys.readouterr().err


def test_exit_1_when_nothing_listens(monkeypatch, capsys) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connection refused
        monkeypatch.setenv("STIGMER_AGENT_RUNNER_PORT", str(port))
        assert healthcheck.main() == 1
    assert "unhealthy" in capsys.readouterr().err


def test_exit_1_on_timeout(monkeypatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)  # accepts the connection but never answers
        ok, detail = healthcheck.probe(s.getsockname()[1], timeout=0.2)
    assert not ok
    assert "timed out" in detail


@pytest.mark.parametrize("value", ["abc", "0", "70000"])
def test_exit_1_on_invalid_port(value: str, monkeypatch, capsys) -> None:
    monkeypatch.setenv("STIGMER_AGENT_RUNNER_PORT", value)
    assert healthcheck.main() == 1
    assert "invalid STIGMER_AGENT_RUNNER_PORT" in capsys.readouterr().err


def test_default_timeout_is_5_seconds() -> None:
    assert healthcheck.TIMEOUT_SECONDS == 5
    assert healthcheck.DEFAULT_PORT == 7235
