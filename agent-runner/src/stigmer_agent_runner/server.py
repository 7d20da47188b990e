"""Run the service with uvicorn: ``python -m stigmer_agent_runner``."""

from __future__ import annotations

import logging
import logging.config
import shutil
import signal
from pathlib import Path
from types import FrameType

import uvicorn

from stigmer_agent_runner.app import create_app
from stigmer_agent_runner.config import Config, load_config, redact_address
from stigmer_agent_runner.logs import log_config
from stigmer_agent_runner.runs import STAGING_PREFIX

log = logging.getLogger("stigmer_agent_runner")

#: Seconds uvicorn waits for open connections after SIGTERM before closing them.
GRACEFUL_SHUTDOWN_SECONDS = 1


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def uvicorn_config(config: Config) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(config),
        host=config.host,
        port=config.port,
        # Plain uvicorn, chosen explicitly: no uvloop, httptools or websockets.
        loop="asyncio",
        http="h11",
        ws="none",
        lifespan="on",
        log_config=log_config(config.log_level),
        log_level=None,
        access_log=True,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


def log_startup(config: Config) -> None:
    log.info(
        "starting agent-runner",
        extra={
            "version": config.version,
            "revision": config.revision,
            "build_date": config.build_date,
            "host": config.host,
            "port": config.port,
            "workspace": str(config.workspace),
            "max_upload_bytes": config.max_upload_bytes,
            "provider": config.llm_provider,
            "model": config.llm_model,
            "server_addr": redact_address(config.server_addr),
            "temporal_address": redact_address(config.temporal_address),
            "temporal_namespace": config.temporal_namespace,
            # Which secrets are set, never their values.
            "secrets": config.secrets_present(),
        },
    )
    if config.errors:
        log.warning(
            "configuration is invalid: /healthz will report unhealthy",
            extra={"errors": list(config.errors)},
        )


def remove_abandoned_uploads(workspace: Path) -> None:
    """Uploads are staged in `.incoming-*` and renamed into place when complete; one
    still there at startup belongs to a process that was killed mid-upload."""
    try:
        leftovers = [p for p in workspace.iterdir() if p.name.startswith(STAGING_PREFIX) and p.is_dir()]
    except OSError:
        return  # a missing or unreadable workspace is /healthz's to report
    for leftover in leftovers:
        shutil.rmtree(leftover, ignore_errors=True)
        log.info("removed an abandoned upload", extra={"path": leftover.name})


def main() -> int:
    # uvicorn captures SIGTERM/SIGINT while serving, shuts down gracefully, then
    # restores the previous handlers and re-raises the signal. With these
    # handlers that ends in a clean exit 0 (also for a signal before serving).
    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.signal(signal.SIGINT, _exit_cleanly)

    config = load_config()
    if config.fatal:
        logging.config.dictConfig(log_config(config.log_level))
        log.error("cannot start: invalid listen address", extra={"errors": list(config.errors)})
        return 2

    server_config = uvicorn_config(config)  # also configures logging from log_config
    log_startup(config)
    try:
        config.workspace.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning(
            "cannot create workspace", extra={"workspace": str(config.workspace), "error": exc.strerror}
        )
    remove_abandoned_uploads(config.workspace)
    uvicorn.Server(server_config).run()
    return 0
