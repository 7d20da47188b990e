"""The python-multipart parser, under whichever module name is installed.

python-multipart >= 0.0.13 installs ``python_multipart`` (and a deprecated
``multipart`` shim); older releases only ``multipart``. Importing through this
module keeps the app importable when neither is present (a broken build, as
happened with PyInstaller) so that ``/healthz`` can say so instead of the
process dying at import.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

MODULE_NAMES = ("python_multipart", "multipart")

MultipartParser: Any = None
FormParserError: type[Exception] = Exception
parse_options_header: Any = None
module_name: str | None = None
import_error: str | None = None


def _load() -> None:
    global MultipartParser, FormParserError, parse_options_header, module_name, import_error
    problems = []
    for name in MODULE_NAMES:
        try:
            parser_mod: ModuleType = importlib.import_module(f"{name}.multipart")
            exc_mod: ModuleType = importlib.import_module(f"{name}.exceptions")
            MultipartParser = parser_mod.MultipartParser
            parse_options_header = parser_mod.parse_options_header
            FormParserError = exc_mod.FormParserError
        except (ImportError, AttributeError) as exc:
            problems.append(f"{name}: {exc}")
            continue
        module_name = name
        import_error = None
        return
    import_error = "python-multipart is not importable (" + "; ".join(problems) + ")"


_load()


def available() -> bool:
    return module_name is not None
