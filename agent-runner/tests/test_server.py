"""The real server, started as ``python -m stigmer_agent_runner`` in a subprocess."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import RawResponse, child_env, file_part, get, multipart, post_raw, request_part, start_server_process

CANARY = "sk-subprocess-canary-9a8b"


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


def test_sigterm_while_an_upload_streams_answers_503_and_exits_within_2s(start_server) -> None:
    # The upload is mid-stream, its data being written by worker threads: it once got
    # 500 (or ran on for seconds), with its staging directory removed under the thread.
    server = start_server()
    server.wait_healthy()
    data = multipart([request_part(), file_part("big.bin", b"x" * 8_000_000)])
    result: list[object] = []

    def upload() -> None:
        try:
            result.append(post_raw(server.port, data, piece=65536, pause=0.005))
        except OSError as exc:
            result.append(exc)

    thread = threading.Thread(target=upload)
    thread.start()
    deadline = time.monotonic() + 10
    staged = server.workspace
    while True:
        staging = [p for p in server.workspace.glob(".incoming-*/files/big.bin")]
        if staging and staging[0].stat().st_size > 300_000:
            staged = staging[0].parent.parent
            break
        assert time.monotonic() < deadline, "the upload never got going"
        time.sleep(0.01)

    start = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    code = server.proc.wait(timeout=5)
    elapsed = time.monotonic() - start
    thread.join(10)

    assert code == 0
    assert elapsed < 2, f"exit took {elapsed:.2f} s"
    response = result[0]
    assert isinstance(response, RawResponse), response
    assert response.status == 503
    assert "shutting down" in response.json()["error"]
    assert response.headers.get("connection") == "close"
    time.sleep(0.2)  # nothing still writing into it, nothing recreated later
    assert not staged.exists()
    assert list(server.workspace.iterdir()) == []


@pytest.fixture(scope="module")
def misconfigured_server(tmp_path_factory):
    """A server given secrets and addresses the wrong way: a key where its file's path
    belongs, a FIFO as a key file, credentials in addresses. Stopped by its first user
    of the complete log; every test here reads only what it needs."""
    root = tmp_path_factory.mktemp("misconfigured")
    fifo = root / "key.fifo"
    os.mkfifo(fifo)
    env = {
        "STIGMER_LLM_PROVIDER": "openai",
        "OPENAI_API_KEY_FILE": CANARY,
        "ANTHROPIC_API_KEY_FILE": str(fifo),
        "STIGMER_SERVER_ADDR": f"https://agent:{CANARY}@stigmer.example:443/api?token={CANARY}2",
        "TEMPORAL_ADDRESS": f"ops:{CANARY}@temporal:7233",
    }
    server = start_server_process(root, env)
    server.wait_serving()  # a FIFO as key file once hung startup here
    status, body = get(server.url("/healthz"))
    server.stop()
    yield server, status, json.loads(body)


def test_key_given_where_its_file_path_was_expected_is_never_echoed(misconfigured_server) -> None:
    server, status, health = misconfigured_server
    assert status == 503
    check = health["checks"]["configuration"]
    assert "OPENAI_API_KEY_FILE" in check and "not the key" in check, check
    assert any("OPENAI_API_KEY_FILE" in line for line in server.lines)
    assert CANARY not in json.dumps(health) + "\n".join(server.lines) + server.stderr_text


def test_credentials_in_server_addresses_are_redacted_in_the_log(misconfigured_server) -> None:
    server, _, _ = misconfigured_server
    startup = json.loads(server.lines[0])
    assert startup["server_addr"] == "https://***@stigmer.example:443/api?***"
    assert startup["temporal_address"] == "***@temporal:7233"
    assert CANARY not in "\n".join(server.lines)


def test_fifo_as_key_file_does_not_hang_startup(misconfigured_server) -> None:
    _, status, health = misconfigured_server
    assert status == 503
    assert "ANTHROPIC_API_KEY_FILE: the path it names is not a regular file" in health["checks"]["configuration"]


def test_commit_syncs_files_and_directories_before_the_rename(start_server, tmp_path: Path) -> None:
    # The run is renamed into place only once its data and the directory entries
    # naming it are on disk; the rename is synced too.
    strace = shutil.which("strace")
    if strace is None:
        pytest.fail("this test watches the server's system calls: install strace (apt-get install strace)")
    trace = tmp_path / "trace.txt"
    server = start_server(
        wrapper=(strace, "-f", "-qq", "-y", "-e", "trace=fsync,fdatasync,rename,renameat,renameat2", "-o", str(trace))
    )
    server.wait_healthy()
    response = post_raw(server.port, multipart([request_part(), file_part("a.txt", b"hello")]))
    assert response.status == 201, response
    run_id = response.json()["id"]
    # strace detaches on SIGTERM and leaves the server running: stop the server itself.
    children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
    os.kill(int(children[0]), signal.SIGTERM)
    server.proc.wait(10)

    ws = server.workspace
    staging = f"{ws}/.incoming-{run_id}"
    calls = trace.read_text()

    def position(pattern: str) -> int:
        found = re.search(pattern, calls)
        assert found, f"no {pattern} in the trace:\n{calls}"
        return found.start()

    synced_file = position(rf"fsync\(\d+<{re.escape(staging)}/files/a\.txt>\)")
    synced_request = position(rf"fsync\(\d+<{re.escape(staging)}/request\.json>\)")
    synced_files_dir = position(rf"fsync\(\d+<{re.escape(staging)}/files>\)")
    synced_staging = position(rf"fsync\(\d+<{re.escape(staging)}>\)")
    renamed = position(rf'rename(at2?)?\(.*"{re.escape(staging)}", .*"{re.escape(str(ws))}/{run_id}"')
    synced_workspace = position(rf"fsync\(\d+<{re.escape(str(ws))}>\)")
    assert synced_file < synced_request < synced_files_dir < synced_staging < renamed < synced_workspace
