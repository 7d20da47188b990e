"""The checks behind ``GET /healthz``. Each returns "ok" or what is wrong."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from stigmer_agent_runner import multipart_compat
from stigmer_agent_runner.config import Config

OK = "ok"


def check_imports() -> str:
    if multipart_compat.available():
        return OK
    return f"failed: {multipart_compat.import_error}"


def check_configuration(config: Config) -> str:
    if config.ok:
        return OK
    # Config.errors name variables and describe problems; they never hold secret values.
    return "invalid: " + "; ".join(config.errors)


def check_workspace(workspace: Path) -> str:
    """The workspace is writable: create, write and delete a temporary file in it.

    A full file system is named as such ("full: ..."): uploads get 507 meanwhile, and
    the check passes again once there is room."""
    try:
        mode = os.stat(workspace).st_mode
    except FileNotFoundError:
        return f"not writable: {workspace} does not exist"
    except OSError as exc:  # e.g. a parent directory that cannot be searched
        return f"not writable: {workspace}: {exc.strerror or exc}"
    if not stat.S_ISDIR(mode):
        return f"not writable: {workspace} is not a directory"
    try:
        fd, name = tempfile.mkstemp(prefix=".healthz-", dir=workspace)
        try:
            os.write(fd, b"ok\n")
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"full: {workspace}: {exc.strerror}"
        return f"not writable: {workspace}: {exc.strerror or exc}"
    return OK


def run_checks(config: Config) -> dict[str, str]:
    return {
        "imports": check_imports(),
        "configuration": check_configuration(config),
        "workspace": check_workspace(config.workspace),
    }
