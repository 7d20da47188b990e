"""JSON-lines logging on stdout, for the app and for uvicorn.

One JSON object per line with ``ts``, ``level``, ``logger``, ``msg`` and any
``extra`` fields. uvicorn is configured with :func:`log_config` so its error and
access logs come out in the same format.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
    # uvicorn passes an ANSI-coloured copy of the message; never emit it.
    "color_message",
}
_BASE_KEYS = ("ts", "level", "logger", "msg")


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object on a single line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=timezone.utc)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, http_version, status = record.args
            out.update(
                client=client, method=method, path=path, http_version=http_version, status=status
            )
        for key, value in vars(record).items():
            if key in _STANDARD_ATTRS or key.startswith("_") or key in out:
                continue
            out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def log_config(level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict, also passed to ``uvicorn.Config``.

    One stdout handler on the root logger; the app's and uvicorn's loggers
    propagate to it. Third-party loggers stay at WARNING.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stdout",
            }
        },
        "loggers": {
            "stigmer_agent_runner": {"level": level, "handlers": [], "propagate": True},
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.access": {"level": level, "handlers": [], "propagate": True},
        },
        "root": {"level": "WARNING", "handlers": ["stdout"]},
    }
