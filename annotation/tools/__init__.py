"""Tools annotators use in the workspace. Importing this package never imports Django.

Names are loaded on first use, so `python -m annotation.tools.sandbox` and the search tools do
not pay for (or import) each other.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from annotation.tools.code_runner import (
        RunResult,
        RunStatus,
        TestOutcome,
        UnsupportedLanguage,
        available_languages,
        run_code,
    )
    from annotation.tools.sandbox import (
        Limits,
        SandboxBusy,
        SandboxUnavailable,
        preflight,
    )

_EXPORTS = {
    "RunResult": "annotation.tools.code_runner",
    "RunStatus": "annotation.tools.code_runner",
    "TestOutcome": "annotation.tools.code_runner",
    "UnsupportedLanguage": "annotation.tools.code_runner",
    "available_languages": "annotation.tools.code_runner",
    "run_code": "annotation.tools.code_runner",
    "Limits": "annotation.tools.sandbox",
    "SandboxBusy": "annotation.tools.sandbox",
    "SandboxUnavailable": "annotation.tools.sandbox",
    "preflight": "annotation.tools.sandbox",
}

__all__ = [
    "Limits",
    "RunResult",
    "RunStatus",
    "SandboxBusy",
    "SandboxUnavailable",
    "TestOutcome",
    "UnsupportedLanguage",
    "available_languages",
    "preflight",
    "run_code",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
