"""Feed bytes -> normalised entries (feedparser, with a fast path for plain
RSS/Atom).  The entries' type, ``Entry``, lives in :mod:`aggregator.types`.

The entry points below are exported lazily (PEP 562): importing one module of
this package must not load the others (start-up stays small).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aggregator.parse.parser import parse_feed

__all__ = [
    "parse_feed",
]

_EXPORTS = {
    "parse_feed": "aggregator.parse.parser",
}


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
