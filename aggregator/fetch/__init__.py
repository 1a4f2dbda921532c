"""The one door to the network: bounded, polite, conditional HTTP over one
aiohttp transport, with the address guard for links found inside feeds as
that transport's resolver.

The entry points below are exported lazily (PEP 562): importing one module of
this package must not load the others (start-up stays small).
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

# httpx's __init__ imports its command-line client, httpx._main, whenever
# rich is installed (it is: the CLI's tables): rich and pygments, ~6 MB in
# every process that fetches, for a ``main`` nothing here calls.  With None
# in its place that import fails and httpx defines its stand-in instead,
# as it does where rich is missing (issue 15; tests/test_startup.py).
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

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
