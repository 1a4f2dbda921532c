"""What the operator writes: feeds.yaml (schema, loading, editing, OPML) and the
runtime settings from flags and ``AGGREGATOR_*`` environment variables.

The entry points below are exported lazily (PEP 562): importing one module of
this package must not load the others (start-up stays small).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aggregator.config.feeds import FeedSpec, load_config
    from aggregator.config.settings import Settings

__all__ = [
    "FeedSpec",
    "Settings",
    "load_config",
]

_EXPORTS = {
    "FeedSpec": "aggregator.config.feeds",
    "Settings": "aggregator.config.settings",
    "load_config": "aggregator.config.feeds",
}


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
