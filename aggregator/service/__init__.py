"""The stages put together: one feed end to end (pipeline), one pass over many
(runner), the daemon, its HTTP side and metrics, reprocess, discovery, logs.

The entry points below are exported lazily (PEP 562): importing one module of
this package must not load the others (start-up stays small).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aggregator.service.daemon import run_daemon
    from aggregator.service.pipeline import Pipeline
    from aggregator.service.runner import fetch_once

__all__ = [
    "Pipeline",
    "fetch_once",
    "run_daemon",
]

_EXPORTS = {
    "Pipeline": "aggregator.service.pipeline",
    "fetch_once": "aggregator.service.runner",
    "run_daemon": "aggregator.service.daemon",
}


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
