from __future__ import annotations

from pathlib import Path

import pytest

from stigmer_agent_runner.config import DEFAULT_MAX_UPLOAD_BYTES, PROVIDERS, Secret, load_config, redact_address


def test_defaults() -> None:
    config = load_config({})
    assert config.host == "0.0.0.0"
    assert config.port == 7235
    assert config.workspace == Path("/workspace")
    assert config.max_upload_bytes == DEFAULT_MAX_UPLOAD_BYTES == 10 * 1024 * 1024
    assert config.llm_provider is None
    assert config.version == config.revision == config.build_date == "unknown"
    assert config.ok and not config.fatal
    assert config.secrets_present() == {"OPENAI_API_KEY": False, "ANTHROPIC_API_KEY": False, "GEMINI_API_KEY": False}


def test_reads_everything(tmp_path: Path) -> None:
    config = load_config(
        {
            "STIGMER_AGENT_RUNNER_HOST": "127.0.0.1",
            "STIGMER_AGENT_RUNNER_PORT": "8080",
            "STIGMER_WORKSPACE": str(tmp_path),
            "STIGMER_MAX_UPLOAD_BYTES": "1024",
            "STIGMER_LLM_PROVIDER": "OpenAI",
            "STIGMER_LLM_MODEL": "gpt-x",
            "OPENAI_API_KEY": "sk-1",
            "STIGMER_SERVER_ADDR": "stigmer:7234",
            "TEMPORAL_ADDRESS": "temporal:7233",
            "TEMPORAL_NAMESPACE": "default",
            "STIGMER_LOG_LEVEL": "debug",
        }
    )
    assert config.errors == ()
    assert (config.host, config.port, config.workspace, config.max_upload_bytes) == ("127.0.0.1", 8080, tmp_path, 1024)
    assert (config.llm_provider, config.llm_model) == ("openai", "gpt-x")
    assert (config.server_addr, config.temporal_address, config.temporal_namespace) == (
        "stigmer:7234",
        "temporal:7233",
        "default",
    )
    assert config.log_level == "DEBUG"
    assert config.secret("OPENAI_API_KEY") == Secret("sk-1")


@pytest.mark.parametrize("port", ["0", "65536", "-1", "http", "80.5", "0x50"])
def test_invalid_port_is_a_fatal_error(port: str) -> None:
    config = load_config({"STIGMER_AGENT_RUNNER_PORT": port})
    assert config.fatal
    assert any("STIGMER_AGENT_RUNNER_PORT" in e for e in config.errors)


@pytest.mark.parametrize("port", ["1", "7235", "65535", " 9000 "])
def test_valid_ports(port: str) -> None:
    config = load_config({"STIGMER_AGENT_RUNNER_PORT": port})
    assert config.ok and config.port == int(port)


@pytest.mark.parametrize("value", ["0", "-5", "ten"])
def test_invalid_max_upload(value: str) -> None:
    config = load_config({"STIGMER_MAX_UPLOAD_BYTES": value})
    assert not config.ok and not config.fatal
    assert config.max_upload_bytes == DEFAULT_MAX_UPLOAD_BYTES


def test_invalid_log_level() -> None:
    config = load_config({"STIGMER_LOG_LEVEL": "chatty"})
    assert config.log_level == "INFO"
    assert any("STIGMER_LOG_LEVEL" in e for e in config.errors)


@pytest.mark.parametrize("provider, key", [(p, k) for p, k in PROVIDERS.items() if k])
def test_provider_without_key_names_the_missing_variable(provider: str, key: str) -> None:
    config = load_config({"STIGMER_LLM_PROVIDER": provider})
    assert len(config.errors) == 1
    assert key in config.errors[0]


def test_unknown_provider_lists_known_ones() -> None:
    config = load_config({"STIGMER_LLM_PROVIDER": "mystery"})
    assert len(config.errors) == 1
    for name in PROVIDERS:
        assert name in config.errors[0]


def test_blank_values_count_as_unset() -> None:
    config = load_config({"STIGMER_LLM_PROVIDER": "", "OPENAI_API_KEY": "", "STIGMER_AGENT_RUNNER_PORT": " "})
    assert config.ok
    assert config.llm_provider is None
    assert config.port == 7235
    assert config.secrets_present()["OPENAI_API_KEY"] is False


def test_file_secret_is_read_and_preferred(tmp_path: Path) -> None:
    key_file = tmp_path / "openai"
    key_file.write_text("sk-from-file\n")
    config = load_config(
        {"OPENAI_API_KEY": "sk-from-env", "OPENAI_API_KEY_FILE": str(key_file), "STIGMER_LLM_PROVIDER": "openai"}
    )
    assert config.ok, config.errors
    assert config.secret("OPENAI_API_KEY").reveal() == "sk-from-file"
    assert config.secrets_present()["OPENAI_API_KEY"] is True


def test_file_secret_satisfies_provider(tmp_path: Path) -> None:
    key_file = tmp_path / "anthropic"
    key_file.write_text("sk-ant\n")
    config = load_config({"ANTHROPIC_API_KEY_FILE": str(key_file), "STIGMER_LLM_PROVIDER": "anthropic"})
    assert config.ok, config.errors
    assert config.secret("ANTHROPIC_API_KEY").reveal() == "sk-ant"


def test_missing_secret_file_is_an_error_without_fallback(tmp_path: Path) -> None:
    config = load_config(
        {"GEMINI_API_KEY": "sk-plain-canary", "GEMINI_API_KEY_FILE": str(tmp_path / "absent")}
    )
    assert config.secret("GEMINI_API_KEY") is None
    assert len(config.errors) == 1
    assert config.errors[0].startswith("GEMINI_API_KEY_FILE: cannot read")
    assert "sk-plain-canary" not in config.errors[0]


def test_empty_secret_file_is_an_error(tmp_path: Path) -> None:
    key_file = tmp_path / "k"
    key_file.write_text("  \n")
    config = load_config({"OPENAI_API_KEY_FILE": str(key_file)})
    assert config.secret("OPENAI_API_KEY") is None
    assert any("OPENAI_API_KEY_FILE" in e and "empty" in e for e in config.errors)


def test_secret_file_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    key_file = tmp_path / "k"
    key_file.write_bytes(b"\xff\xfe\xfa")
    config = load_config({"OPENAI_API_KEY_FILE": str(key_file)})
    assert any("OPENAI_API_KEY_FILE" in e and "UTF-8" in e for e in config.errors)


def test_secrets_never_appear_in_repr_or_str(tmp_path: Path) -> None:
    key_file = tmp_path / "k"
    key_file.write_text("sk-file-canary")
    config = load_config({"OPENAI_API_KEY_FILE": str(key_file), "ANTHROPIC_API_KEY": "sk-env-canary"})
    for text in (repr(config), str(config), repr(config.secret("OPENAI_API_KEY")), str(config.secret("ANTHROPIC_API_KEY")), f"{config.secrets!r}"):
        assert "canary" not in text, text


@pytest.mark.parametrize("kind, fragment", [("directory", "not a regular file"), ("big", "larger than 65536 bytes")])
def test_secret_file_must_be_a_small_regular_file(tmp_path: Path, kind: str, fragment: str) -> None:
    path = tmp_path
    if kind == "big":
        path = tmp_path / "big"
        path.write_bytes(b"k" * (64 * 1024 + 1))
    config = load_config({"OPENAI_API_KEY_FILE": str(path)})
    assert config.secret("OPENAI_API_KEY") is None
    assert any(e.startswith("OPENAI_API_KEY_FILE: ") and fragment in e for e in config.errors), config.errors
    assert str(tmp_path) not in " ".join(config.errors)


def test_secret_file_path_is_never_in_the_errors(tmp_path: Path) -> None:
    for value in ("sk-live-canary-0123456789", str(tmp_path / "sk-canary-dir" / "key")):
        errors = load_config({"GEMINI_API_KEY_FILE": value}).errors
        assert errors and "canary" not in " ".join(errors), errors
    assert "not the key" in load_config({"GEMINI_API_KEY_FILE": "sk-live-canary"}).errors[0]


@pytest.mark.parametrize(
    "address, logged",
    [
        ("stigmer.example:7234", "stigmer.example:7234"),
        ("https://stigmer.example/api", "https://stigmer.example/api"),
        ("https://user:pw@stigmer.example:443/api", "https://***@stigmer.example:443/api"),
        ("user:p@ss@temporal:7233", "***@temporal:7233"),
        ("grpc://token@host", "grpc://***@host"),
        ("https://host/path@not-userinfo", "https://host/path@not-userinfo"),
        ("https://host/x?token=abc&b=c", "https://host/x?***"),
        (None, None),
    ],
)
def test_redact_address_hides_credentials(address: str | None, logged: str | None) -> None:
    assert redact_address(address) == logged
