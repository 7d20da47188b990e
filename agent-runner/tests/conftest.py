from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from helpers import Server, start_server_process

from stigmer_agent_runner.app import create_app
from stigmer_agent_runner.config import Config, load_config


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "workspace"
    ws.mkdir()
    return ws


@pytest.fixture
def make_config(workspace: Path):
    def make(env: Mapping[str, str] | None = None) -> Config:
        full = {"STIGMER_WORKSPACE": str(workspace)}
        full.update(env or {})
        return load_config(full)

    return make


@pytest.fixture
def make_client(make_config):
    clients: list[TestClient] = []

    def make(env: Mapping[str, str] | None = None) -> TestClient:
        client = TestClient(create_app(make_config(env)), raise_server_exceptions=True)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


@pytest.fixture
def start_server(tmp_path: Path):
    """Start the real server with extra environment variables; each test's servers
    share its ``tmp_path / "workspace"`` (unless STIGMER_WORKSPACE says otherwise)."""
    servers: list[Server] = []

    def start(preexec_fn=None, wrapper: tuple[str, ...] = (), **env: str) -> Server:
        server = start_server_process(tmp_path, env, preexec_fn=preexec_fn, wrapper=wrapper)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory):
    """One healthy real server for the tests that only send requests with the default
    settings; each test looks only at the runs its own requests created."""
    server = start_server_process(tmp_path_factory.mktemp("shared"), {})
    server.wait_healthy()
    yield server
    server.stop()
