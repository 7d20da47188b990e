"""The Starlette application: routes and JSON error handling."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stigmer_agent_runner import health
from stigmer_agent_runner.config import Config, load_config
from stigmer_agent_runner.runs import Shutdown, create_run, error_response

log = logging.getLogger(__name__)

NO_STORE = {"Cache-Control": "no-store"}


async def healthz(request: Request) -> Response:
    config: Config = request.app.state.config
    checks = {
        "imports": health.check_imports(),
        "configuration": health.check_configuration(config),
        # File system access may block (e.g. a hung network mount): keep it off the loop.
        "workspace": await run_in_threadpool(health.check_workspace, config.workspace),
    }
    if all(value == health.OK for value in checks.values()):
        return JSONResponse({"status": "ok", "checks": checks}, headers=NO_STORE)
    failed = {name: value for name, value in checks.items() if value != health.OK}
    log.warning("unhealthy", extra={"failed": failed})
    return JSONResponse({"status": "unhealthy", "checks": checks}, status_code=503, headers=NO_STORE)


async def version(request: Request) -> Response:
    config: Config = request.app.state.config
    return JSONResponse(
        {"version": config.version, "revision": config.revision, "build_date": config.build_date}
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):  # pragma: no cover - no body allowed
        return Response(status_code=exc.status_code, headers=exc.headers)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    # Starlette re-raises after this, and uvicorn logs the traceback.
    return error_response(500, "internal server error")


def create_app(config: Config | None = None) -> Starlette:
    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/version", version, methods=["GET"]),
            Route("/v1/runs", create_run, methods=["POST"]),
        ],
        exception_handlers={HTTPException: _http_error, 500: _server_error},
    )
    app.state.config = load_config() if config is None else config
    app.state.shutdown = Shutdown()
    return app
