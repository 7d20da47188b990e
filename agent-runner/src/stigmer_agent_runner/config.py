"""Configuration, read once from the environment at startup.

Everything the service needs is in one frozen :class:`Config`. Loading never
raises: every problem is collected in ``Config.errors`` so that ``/healthz`` can
report it (the server still starts, but reports itself unhealthy).

Secrets (API keys) are wrapped in :class:`Secret`, whose ``repr``/``str`` never
show the value, and are kept out of the dataclass ``repr``. For each secret
``NAME`` a ``NAME_FILE`` variable may point at a file holding the value; the
file variant is preferred (it keeps the value out of ``docker inspect`` and the
process environment) and wins when both are set.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 7235
DEFAULT_WORKSPACE = "/workspace"
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
DEFAULT_LOG_LEVEL = "INFO"
DEFAULT_CLIENT_TIMEOUT_SECONDS = 10.0
DEFAULT_MAX_CONNECTIONS = 256
#: A key file is a few hundred bytes; a bigger one is not a key file.
MAX_SECRET_FILE_BYTES = 64 * 1024
UNKNOWN = "unknown"

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

#: The secret variables this service knows. Each may also be given as NAME_FILE.
SECRET_VARS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY")

#: Known LLM providers and the secret each one needs (None: no key needed).
PROVIDERS: Mapping[str, str | None] = {
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "ollama": None,
    "openai": "OPENAI_API_KEY",
}


class Secret:
    """A secret string that does not show its value when printed or logged."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value. Call only where the value is really used."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return self._value == other._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Config:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    workspace: Path = Path(DEFAULT_WORKSPACE)
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    log_level: str = DEFAULT_LOG_LEVEL
    #: Longest a client may take to send a request's head, or pause inside its body.
    client_timeout_seconds: float = DEFAULT_CLIENT_TIMEOUT_SECONDS
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    llm_provider: str | None = None
    llm_model: str | None = None
    server_addr: str | None = None
    temporal_address: str | None = None
    temporal_namespace: str | None = None
    version: str = UNKNOWN
    revision: str = UNKNOWN
    build_date: str = UNKNOWN
    secrets: Mapping[str, Secret] = field(default_factory=dict, repr=False)
    #: Human-readable problems found while loading; never contains secret values.
    errors: tuple[str, ...] = ()
    #: True when the listen address itself is unusable (the server cannot start).
    fatal: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors

    def secret(self, name: str) -> Secret | None:
        return self.secrets.get(name)

    def secrets_present(self) -> dict[str, bool]:
        """Which known secrets are set, as booleans: safe to log."""
        return {name: name in self.secrets for name in SECRET_VARS}


_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)?(?P<userinfo>[^/?#]*)@")


def redact_address(address: str | None) -> str | None:
    """``address`` fit for a log: credentials (``user:password@``) and the query
    string (tokens often travel there) replaced by ``***``."""
    if address is None:
        return None
    redacted = _USERINFO.sub(lambda m: (m["scheme"] or "") + "***@", address, count=1)
    base, sep, _ = redacted.partition("?")
    return base + "?***" if sep else redacted


def _get(env: Mapping[str, str], name: str) -> str | None:
    """An environment value, with empty or blank treated as unset."""
    value = env.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def _int_in_range(
    env: Mapping[str, str], name: str, default: int, low: int, high: int, errors: list[str]
) -> tuple[int, bool]:
    return _in_range(env, name, default, low, high, errors, int)


def _in_range(
    env: Mapping[str, str], name: str, default: Any, low: Any, high: Any, errors: list[str], kind: type
) -> tuple[Any, bool]:
    raw = _get(env, name)
    if raw is None:
        return default, True
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:  # also refuses NaN
        what = "an integer" if kind is int else "a number"
        errors.append(f"{name} must be {what} between {low} and {high}, got {raw!r}")
        return default, False
    return value, True


def _read_secret_file(var: str, path: str, errors: list[str]) -> Secret | None:
    """The key in the file ``path`` names. ``path`` itself is never put in a message:
    it may be the key, given where its path was expected. Only a regular file is read
    (a FIFO or a device would block startup or never end)."""
    hint = "" if "/" in path else " (it must be the path of a file holding the key, not the key)"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        errors.append(f"{var}: cannot read the file it names: {exc.strerror or exc.__class__.__name__}{hint}")
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            errors.append(f"{var}: the path it names is not a regular file")
            return None
        data = os.read(fd, MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        errors.append(f"{var}: cannot read the file it names: {exc.strerror or exc.__class__.__name__}")
        return None
    finally:
        os.close(fd)
    if len(data) > MAX_SECRET_FILE_BYTES:
        errors.append(f"{var}: the file it names is larger than {MAX_SECRET_FILE_BYTES} bytes")
        return None
    try:
        value = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        errors.append(f"{var}: the file it names is not valid UTF-8")
        return None
    if not value:
        errors.append(f"{var}: the file it names is empty")
        return None
    return Secret(value)


def _load_secrets(env: Mapping[str, str], errors: list[str]) -> dict[str, Secret]:
    secrets: dict[str, Secret] = {}
    for name in SECRET_VARS:
        file_var = f"{name}_FILE"
        path = _get(env, file_var)
        if path is not None:
            # The file variant wins; no silent fallback to the plain variable
            # when the file is unusable: the operator asked for the file.
            secret = _read_secret_file(file_var, path, errors)
        else:
            value = _get(env, name)
            secret = Secret(value) if value is not None else None
        if secret is not None:
            secrets[name] = secret
    return secrets


def load_config(environ: Mapping[str, str] | None = None) -> Config:
    """Build the configuration from ``environ`` (default: ``os.environ``).

    Reads ``*_FILE`` secret files. Never raises for bad values: see ``errors``.
    """
    env = os.environ if environ is None else environ
    errors: list[str] = []

    host = _get(env, "STIGMER_AGENT_RUNNER_HOST") or DEFAULT_HOST
    port, port_ok = _int_in_range(env, "STIGMER_AGENT_RUNNER_PORT", DEFAULT_PORT, 1, 65535, errors)
    max_upload, _ = _int_in_range(
        env, "STIGMER_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES, 1, 2**63 - 1, errors
    )
    client_timeout, _ = _in_range(
        env, "STIGMER_CLIENT_TIMEOUT_SECONDS", DEFAULT_CLIENT_TIMEOUT_SECONDS, 0.1, 3600, errors, float
    )
    max_connections, _ = _int_in_range(env, "STIGMER_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS, 1, 100_000, errors)
    workspace = Path(_get(env, "STIGMER_WORKSPACE") or DEFAULT_WORKSPACE)

    log_level = (_get(env, "STIGMER_LOG_LEVEL") or DEFAULT_LOG_LEVEL).upper()
    if log_level not in LOG_LEVELS:
        errors.append(f"STIGMER_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
        log_level = DEFAULT_LOG_LEVEL

    secrets = _load_secrets(env, errors)

    provider = _get(env, "STIGMER_LLM_PROVIDER")
    if provider is not None:
        provider = provider.lower()
        if provider not in PROVIDERS:
            errors.append(
                f"STIGMER_LLM_PROVIDER must be one of {', '.join(sorted(PROVIDERS))}, got {provider!r}"
            )
        else:
            needed = PROVIDERS[provider]
            if needed is not None and needed not in secrets:
                errors.append(
                    f"STIGMER_LLM_PROVIDER={provider} requires {needed} (or {needed}_FILE) to be set"
                )

    return Config(
        host=host,
        port=port,
        workspace=workspace,
        max_upload_bytes=max_upload,
        log_level=log_level,
        client_timeout_seconds=client_timeout,
        max_connections=max_connections,
        llm_provider=provider,
        llm_model=_get(env, "STIGMER_LLM_MODEL"),
        server_addr=_get(env, "STIGMER_SERVER_ADDR"),
        temporal_address=_get(env, "TEMPORAL_ADDRESS"),
        temporal_namespace=_get(env, "TEMPORAL_NAMESPACE"),
        version=_get(env, "STIGMER_VERSION") or UNKNOWN,
        revision=_get(env, "STIGMER_REVISION") or UNKNOWN,
        build_date=_get(env, "STIGMER_BUILD_DATE") or UNKNOWN,
        secrets=secrets,
        errors=tuple(errors),
        fatal=not port_ok,
    )
