"""The real server, started as ``python -m stigmer_agent_runner`` in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

CANARY = "sk-subprocess-canary-9a8b"
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
    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc = proc
        self.port = port
        self.lines: list[str] = []
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

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._reader.join(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def start_server(tmp_path: Path):
    servers: list[Server] = []

    def start(**env: str) -> Server:
        port = free_port()
        workspace = tmp_path / "workspace"
        workspace.mkdir(exist_ok=True)
        settings = {
            "STIGMER_AGENT_RUNNER_PORT": str(port),
            "STIGMER_AGENT_RUNNER_HOST": "127.0.0.1",
            "STIGMER_WORKSPACE": str(workspace),
            "PYTHONUNBUFFERED": "1",
        }
        settings.update(env)
        full_env = child_env(**settings)
        proc = subprocess.Popen(
            [sys.executable, "-m", "stigmer_agent_runner"],
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
        )
        server = Server(proc, port)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_real_server_serves_logs_json_and_stops_on_sigterm(start_server, tmp_path: Path) -> None:
    key_file = tmp_path / "openai.key"
    key_file.write_text(CANARY + "\n")
    server = start_server(
        STIGMER_LLM_PROVIDER="openai",
        STIGMER_LLM_MODEL="gpt-test",
        OPENAI_API_KEY_FILE=str(key_file),
        ANTHROPIC_API_KEY=CANARY,
        STIGMER_VERSION="9.9.9",
    )
    health = server.wait_healthy()
    assert health == {"status": "ok", "checks": {"imports": "ok", "configuration": "ok", "workspace": "ok"}}
    assert get(f"http://127.0.0.1:{server.port}/version")[1] == b'{"version":"9.9.9","revision":"unknown","build_date":"unknown"}'

    # The container probe agrees.
    probe = subprocess.run(
        [sys.executable, "-m", "stigmer_agent_runner.healthcheck"],
        env=child_env(STIGMER_AGENT_RUNNER_PORT=str(server.port)),
        capture_output=True,
        timeout=10,
    )
    assert probe.returncode == 0, probe.stderr

    # An upload still in flight at SIGTERM: the graceful-shutdown timeout must
    # cut it off, and its staging directory must not be left behind.
    workspace = tmp_path / "workspace"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as upload:
        boundary = "b0undary"
        head = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.txt\"\r\n\r\n"
        ).encode()
        upload.sendall(
            b"POST /v1/runs HTTP/1.1\r\nHost: x\r\n"
            + f"Content-Type: multipart/form-data; boundary={boundary}\r\n".encode()
            + b"Content-Length: 100000\r\n\r\n"
            + head
            + b"x" * 1000
        )
        deadline = time.monotonic() + 10
        while not any(p.name.startswith(".incoming-") for p in workspace.iterdir()):
            assert time.monotonic() < deadline, "upload never started"
            time.sleep(0.01)

        start = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        try:
            code = server.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pytest.fail("server did not exit within 2 s of SIGTERM")
        elapsed = time.monotonic() - start
    assert code == 0, server.lines
    assert elapsed < 2
    assert list(workspace.iterdir()) == []
    server._reader.join(5)
    stderr = server.proc.stderr.read().decode() if server.proc.stderr else ""

    assert server.lines, "no log output"
    objs = [json.loads(line) for line in server.lines]  # every stdout line is JSON
    startup = objs[0]
    assert startup["msg"] == "starting agent-runner"
    assert startup["level"] == "INFO"
    assert (startup["port"], startup["provider"], startup["model"], startup["version"]) == (
        server.port,
        "openai",
        "gpt-test",
        "9.9.9",
    )
    assert startup["secrets"] == {"OPENAI_API_KEY": True, "ANTHROPIC_API_KEY": True, "GEMINI_API_KEY": False}
    loggers = {o["logger"] for o in objs}
    assert {"uvicorn.error", "uvicorn.access"} <= loggers  # uvicorn logs JSON too
    access = [o for o in objs if o["logger"] == "uvicorn.access"]
    assert any(o["path"] == "/healthz" and o["status"] == 200 for o in access)
    assert CANARY not in "\n".join(server.lines) + stderr
    assert stderr == ""


def test_invalid_port_exits_with_an_error(start_server) -> None:
    server = start_server(STIGMER_AGENT_RUNNER_PORT="99999")
    code = server.proc.wait(timeout=20)
    server._reader.join(5)
    assert code == 2
    error = json.loads(server.lines[-1])
    assert error["level"] == "ERROR"
    assert any("STIGMER_AGENT_RUNNER_PORT" in e for e in error["errors"])


def test_healthcheck_module_is_stdlib_only() -> None:
    code = (
        "import sys, stigmer_agent_runner.healthcheck as h; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'starlette', 'uvicorn', 'anyio', 'python_multipart', 'multipart'}); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_uploads_abandoned_by_a_killed_server_are_removed_at_startup(start_server, tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    leftover = workspace / ".incoming-0123456789abcdef" / "files"
    leftover.mkdir(parents=True)
    (leftover / "half.bin").write_bytes(b"x" * 100)
    finished = workspace / "0123456789abcdef"
    finished.mkdir()
    server = start_server()
    server.wait_healthy()
    assert not (workspace / ".incoming-0123456789abcdef").exists()
    assert finished.is_dir(), "a completed run was removed"
