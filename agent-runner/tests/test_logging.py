from __future__ import annotations

import io
import json
import logging
import logging.config
from pathlib import Path

import pytest
from helpers import file_part, multipart, post_run, request_part

from stigmer_agent_runner.logs import JsonFormatter, log_config
from stigmer_agent_runner.server import log_startup

CANARIES = ("sk-openai-canary-1f2e", "sk-ant-canary-3d4c", "gm-canary-5b6a")


def record(name: str = "test", msg: str = "hello %s", args=("world",), **extra) -> logging.LogRecord:
    rec = logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_formatter_emits_one_json_object_with_extras() -> None:
    line = JsonFormatter().format(record(run_id="abc", files=2, nested={"a": True}, path=Path("/x")))
    assert "\n" not in line
    obj = json.loads(line)
    assert obj["level"] == "INFO"
    assert obj["logger"] == "test"
    assert obj["msg"] == "hello world"
    assert obj["ts"].endswith("Z") and "T" in obj["ts"]
    assert obj["run_id"] == "abc" and obj["files"] == 2 and obj["nested"] == {"a": True}
    assert obj["path"] == "/x"  # non-JSON values are stringified, not dropped


def test_formatter_does_not_let_extras_override_base_fields() -> None:
    obj = json.loads(JsonFormatter().format(record(level="FAKE", ts="never")))
    assert obj["level"] == "INFO" and obj["ts"] != "never"


def test_formatter_drops_uvicorn_color_message() -> None:
    obj = json.loads(JsonFormatter().format(record(name="uvicorn.error", color_message="\x1b[36mx\x1b[0m")))
    assert "color_message" not in obj


def test_formatter_splits_uvicorn_access_fields() -> None:
    rec = record(
        name="uvicorn.access",
        msg='%s - "%s %s HTTP/%s" %d',
        args=("127.0.0.1:5000", "GET", "/healthz", "1.1", 200),
    )
    obj = json.loads(JsonFormatter().format(rec))
    assert obj["msg"] == '127.0.0.1:5000 - "GET /healthz HTTP/1.1" 200'
    assert (obj["client"], obj["method"], obj["path"], obj["http_version"], obj["status"]) == (
        "127.0.0.1:5000",
        "GET",
        "/healthz",
        "1.1",
        200,
    )


def test_formatter_includes_exceptions_on_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logger = logging.getLogger("x")
        rec = logger.makeRecord("x", logging.ERROR, __file__, 1, "failed", (), exc_info=__import__("sys").exc_info())
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exc"]


def test_log_config_routes_app_and_uvicorn_loggers_to_one_json_handler() -> None:
    cfg = log_config("DEBUG")
    assert cfg["root"]["handlers"] == ["stdout"]
    assert cfg["handlers"]["stdout"]["stream"] == "ext://sys.stdout"
    for name in ("stigmer_agent_runner", "uvicorn", "uvicorn.error", "uvicorn.access"):
        assert cfg["loggers"][name]["propagate"] is True
        assert cfg["loggers"][name]["level"] == "DEBUG"
    assert cfg["disable_existing_loggers"] is False


@pytest.fixture
def captured_logs():
    """Apply the service's logging config, with the handler writing to a buffer."""
    buffer = io.StringIO()
    cfg = log_config("DEBUG")
    cfg["handlers"]["stdout"]["stream"] = buffer
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    logging.config.dictConfig(cfg)
    try:
        yield buffer
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)


def test_secrets_never_appear_in_logs(captured_logs: io.StringIO, make_config, make_client, tmp_path: Path) -> None:
    key_file = tmp_path / "anthropic.key"
    key_file.write_text(CANARIES[1] + "\n")
    env = {
        "STIGMER_LLM_PROVIDER": "gemini",
        "OPENAI_API_KEY": CANARIES[0],
        "ANTHROPIC_API_KEY_FILE": str(key_file),
        "GEMINI_API_KEY": CANARIES[2],
        "STIGMER_LLM_MODEL": "some-model",
    }
    config = make_config(env)
    assert config.secret("ANTHROPIC_API_KEY").reveal() == CANARIES[1]

    log_startup(config, 256)
    # A configuration error is logged too: it must name, not show, the secret.
    log_startup(make_config({**env, "STIGMER_LLM_PROVIDER": "anthropic", "ANTHROPIC_API_KEY_FILE": str(tmp_path / "gone")}), 256)
    client = make_client(env)
    client.get("/healthz")
    client.get("/version")
    post_run(client, multipart([request_part(), file_part("../bad")]))
    post_run(client, multipart([request_part(), file_part("good.txt")]))

    output = captured_logs.getvalue()
    lines = output.splitlines()
    assert len(lines) >= 5
    objs = [json.loads(line) for line in lines]  # every line is one JSON object
    startup = next(o for o in objs if o["msg"] == "starting agent-runner")
    assert startup["secrets"] == {"OPENAI_API_KEY": True, "ANTHROPIC_API_KEY": True, "GEMINI_API_KEY": True}
    assert (startup["provider"], startup["model"], startup["port"]) == ("gemini", "some-model", 7235)
    assert any(o["msg"] == "run created" for o in objs)
    assert any(o["msg"] == "run rejected" for o in objs)
    assert any("ANTHROPIC_API_KEY_FILE" in json.dumps(o) for o in objs)
    for canary in CANARIES:
        assert canary not in output
