"""Run the service with uvicorn: ``python -m stigmer_agent_runner``.

Owns the connection-level bounds (uvicorn's settings, and the two it lacks in
:class:`BoundedH11Protocol`), the file descriptor limit, and shutdown: uploads still
receiving learn of it first (:class:`Server`), then uvicorn closes what is left.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import logging.config
import resource
import shutil
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from stigmer_agent_runner.app import create_app
from stigmer_agent_runner.config import Config, load_config, redact_address
from stigmer_agent_runner.logs import log_config
from stigmer_agent_runner.runs import STAGING_PREFIX, Shutdown

log = logging.getLogger("stigmer_agent_runner")

#: Seconds uvicorn waits for open connections after SIGTERM before closing them.
GRACEFUL_SHUTDOWN_SECONDS = 1
#: uvicorn's keep-alive timeout: an idle connection between requests is closed after it.
KEEP_ALIVE_SECONDS = 5
#: Request line and headers together (h11's own default, stated here as a bound).
MAX_HEAD_BYTES = 16 * 1024
#: File descriptors kept out of the connection budget: logs, the listener, the worker
#: threads' files, the health probe.
RESERVED_FDS = 64
MAX_BACKLOG = 128

_TOO_MANY_BODY = json.dumps({"error": "too many connections: try again shortly"}).encode()
_TOO_MANY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(_TOO_MANY_BODY)
    + _TOO_MANY_BODY
)


@dataclass(frozen=True)
class Limits:
    max_connections: int
    head_timeout_seconds: float


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the two bounds uvicorn does not have.

    - A deadline for each request head: from the moment a connection opens, or its
      previous response ends, the client has ``head_timeout_seconds`` to deliver the next
      request line and headers (uvicorn's keep-alive timeout only closes a connection
      that sends nothing, and not before its first request). The rest of an unread
      request body counts against the same deadline.
    - A cap on open connections, each holding a file descriptor: one over the cap makes
      room by closing the connection that has waited longest for a request head (so
      slow or idle clients cannot lock others out); when every connection has a
      request in flight, the new one gets 503 and is closed. uvicorn's
      ``limit_concurrency`` is not used: it keeps the connections open (descriptors run
      out) and counts idle ones, so a few idle clients would turn every request into a
      503.
    """

    def __init__(self, *args: Any, limits: Limits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._head_timer: asyncio.TimerHandle | None = None
        #: Loop time since which the connection waits for a request head; None while a
        #: request is in flight.
        self._waiting_since: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._expect_head()
        if len(self.connections) > self._limits.max_connections:
            self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._waiting_since is not None and self.cycle is not None and not self.cycle.response_complete:
            self._stop_head_timer()
            self._waiting_since = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # A pipelined request may have started inside super(): then it is in flight.
        if not self.transport.is_closing() and self.cycle.response_complete:
            self._expect_head()

    def _expect_head(self) -> None:
        self._stop_head_timer()
        self._waiting_since = self.loop.time()
        self._head_timer = self.loop.call_later(self._limits.head_timeout_seconds, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        self.transport.close()

    def _make_room(self) -> None:
        open_connections = [c for c in self.connections if not c.transport.is_closing()]
        if len(open_connections) <= self._limits.max_connections:
            return
        waiting = [
            c
            for c in open_connections
            if c is not self and isinstance(c, BoundedH11Protocol) and c._waiting_since is not None
        ]
        if waiting:
            min(waiting, key=lambda c: c._waiting_since or 0.0).transport.close()
        else:
            self.transport.write(_TOO_MANY)
            self.transport.close()


class Server(uvicorn.Server):
    """uvicorn's server that tells in-flight uploads first when it shuts down, so they
    answer 503 and remove their staging directory while uvicorn waits for them."""

    def __init__(self, config: uvicorn.Config, shutdown: Shutdown) -> None:
        super().__init__(config)
        self._shutdown = shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._shutdown.begin()
        await super().shutdown(sockets)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def connection_budget(wanted: int) -> tuple[int, int]:
    """The connection cap (``wanted``, lowered if it must be) and the listen backlog,
    sized to the file descriptor limit, whose soft value is first raised to the hard
    one (often 1024 against 524288 in containers). Each connection may hold a socket
    and an upload file; asyncio accepts up to ``backlog`` sockets at a time, and one
    closed to make room keeps its descriptor for a few loop iterations."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    budget = (1 << 20 if soft == resource.RLIM_INFINITY else soft) - RESERVED_FDS
    backlog = max(4, min(MAX_BACKLOG, budget // 8))
    return max(1, min(wanted, (budget - 4 * backlog) // 2)), backlog


def uvicorn_config(config: Config, app: Any, max_connections: int, backlog: int) -> uvicorn.Config:
    limits = Limits(max_connections=max_connections, head_timeout_seconds=config.client_timeout_seconds)
    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        # Plain uvicorn, chosen explicitly: no uvloop, httptools or websockets.
        loop="asyncio",
        http=functools.partial(BoundedH11Protocol, limits=limits),  # type: ignore[arg-type]
        ws="none",
        lifespan="on",
        log_config=log_config(config.log_level),
        log_level=None,
        access_log=True,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        timeout_keep_alive=min(KEEP_ALIVE_SECONDS, config.client_timeout_seconds),
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        backlog=backlog,
    )


def log_startup(config: Config, max_connections: int) -> None:
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
            "client_timeout_seconds": config.client_timeout_seconds,
            "max_connections": max_connections,
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

    app = create_app(config)
    max_connections, backlog = connection_budget(config.max_connections)
    server_config = uvicorn_config(config, app, max_connections, backlog)  # also configures logging
    log_startup(config, max_connections)
    try:
        config.workspace.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning(
            "cannot create workspace", extra={"workspace": str(config.workspace), "error": exc.strerror}
        )
    remove_abandoned_uploads(config.workspace)
    Server(server_config, app.state.shutdown).run()
    return 0
