"""The one door to the network: bounded, polite, conditional HTTP over one
aiohttp transport, with the address guard for links found inside feeds as
that transport's resolver.

The entry points below are exported lazily (PEP 562): importing one module of
this package must not load the others (start-up stays small).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aggregator.fetch.fetcher import Fetcher, FetchResult

__all__ = [
    "FetchResult",
    "Fetcher",
]

_EXPORTS = {
    "FetchResult": "aggregator.fetch.fetcher",
    "Fetcher": "aggregator.fetch.fetcher",
}


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
