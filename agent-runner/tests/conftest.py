from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from starlette.testclient import TestClient

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
