from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from stigmer_agent_runner import multipart_compat


def test_healthy(client, workspace: Path) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ok",
        "checks": {"imports": "ok", "configuration": "ok", "workspace": "ok"},
    }
    assert response.headers["cache-control"] == "no-store"
    assert list(workspace.iterdir()) == []  # the probe file is removed


def test_healthy_with_provider_and_key(make_client) -> None:
    client = make_client({"STIGMER_LLM_PROVIDER": "openai", "OPENAI_API_KEY": "sk-test"})
    assert client.get("/healthz").status_code == 200


def test_ollama_needs_no_key(make_client) -> None:
    assert make_client({"STIGMER_LLM_PROVIDER": "ollama"}).get("/healthz").status_code == 200


def test_unhealthy_when_workspace_is_missing(make_client, tmp_path: Path) -> None:
    client = make_client({"STIGMER_WORKSPACE": str(tmp_path / "missing")})
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["checks"]["workspace"].startswith("not writable: ")
    assert "does not exist" in body["checks"]["workspace"]
    assert body["checks"]["imports"] == "ok"
    assert body["checks"]["configuration"] == "ok"


def test_unhealthy_when_workspace_is_not_a_directory(make_client, tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("")
    body = make_client({"STIGMER_WORKSPACE": str(path)}).get("/healthz").json()
    assert body["status"] == "unhealthy"
    assert body["checks"]["workspace"].startswith("not writable: ")


def test_unhealthy_when_workspace_is_read_only(make_client, workspace: Path) -> None:
    # Root ignores permission bits, but not the immutable attribute: make the
    # workspace unwritable for whoever runs the tests.
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(workspace)], check=True)
        restore = ["chattr", "-i", str(workspace)]
    else:
        workspace.chmod(0o500)
        restore = ["chmod", "0700", str(workspace)]
    try:
        body = make_client().get("/healthz").json()
    finally:
        subprocess.run(restore, check=True)
    assert body["status"] == "unhealthy"
    assert body["checks"]["workspace"].startswith("not writable: ")


def test_unhealthy_when_provider_key_is_missing(make_client) -> None:
    client = make_client({"STIGMER_LLM_PROVIDER": "anthropic", "OPENAI_API_KEY": "sk-canary-value"})
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    check = body["checks"]["configuration"]
    assert check.startswith("invalid: ")
    assert "ANTHROPIC_API_KEY" in check
    assert body["checks"]["workspace"] == "ok"
    assert "sk-canary-value" not in response.text


def test_unhealthy_when_provider_is_unknown(make_client) -> None:
    body = make_client({"STIGMER_LLM_PROVIDER": "skynet"}).get("/healthz").json()
    assert body["status"] == "unhealthy"
    assert "STIGMER_LLM_PROVIDER" in body["checks"]["configuration"]
    assert "skynet" in body["checks"]["configuration"]


def test_unhealthy_when_secret_file_is_unreadable(make_client, tmp_path: Path) -> None:
    client = make_client(
        {"STIGMER_LLM_PROVIDER": "gemini", "GEMINI_API_KEY_FILE": str(tmp_path / "nope")}
    )
    body = client.get("/healthz").json()
    assert body["status"] == "unhealthy"
    assert "GEMINI_API_KEY_FILE" in body["checks"]["configuration"]


def test_unhealthy_when_max_upload_is_invalid(make_client) -> None:
    body = make_client({"STIGMER_MAX_UPLOAD_BYTES": "lots"}).get("/healthz").json()
    assert body["status"] == "unhealthy"
    assert "STIGMER_MAX_UPLOAD_BYTES" in body["checks"]["configuration"]


def test_reports_every_failed_check(make_client, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(multipart_compat, "module_name", None)
    monkeypatch.setattr(multipart_compat, "import_error", "python-multipart is not importable (test)")
    client = make_client({"STIGMER_WORKSPACE": str(tmp_path / "missing"), "STIGMER_LLM_PROVIDER": "openai"})
    response = client.get("/healthz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["imports"].startswith("failed: python-multipart is not importable")
    assert "OPENAI_API_KEY" in checks["configuration"]
    assert checks["workspace"].startswith("not writable: ")


def test_runs_endpoint_says_when_multipart_is_missing(client, monkeypatch) -> None:
    from helpers import multipart, post_run, request_part

    monkeypatch.setattr(multipart_compat, "module_name", None)
    monkeypatch.setattr(multipart_compat, "import_error", "python-multipart is not importable (test)")
    response = post_run(client, multipart([request_part()]))
    assert response.status_code == 503
    assert "multipart" in response.json()["error"]


def test_multipart_is_really_importable() -> None:
    # The packaging concern behind the imports check: the parser is present.
    assert multipart_compat.available(), multipart_compat.import_error
    assert multipart_compat.module_name in multipart_compat.MODULE_NAMES
    assert multipart_compat.MultipartParser is not None
