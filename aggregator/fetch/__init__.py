"""The one door to the network: bounded, polite, conditional HTTP over one
aiohttp transport, with the address guard for links found inside feeds as
that transport's resolver.

The entry points below are exported lazily (PEP 562): importing one module of
this package must not load the others (start-up stays small).
"""

from __future__ import annotations

import importlib
import sys
import types
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


def _defer_httpx_cli() -> None:
    """Keep ``import httpx`` from importing httpx's command-line client.

    httpx's ``__init__`` imports ``httpx._main`` (its ``httpx`` command)
    whenever rich, pygments and click are installed -- as they are here --
    which is ~45 ms and ~6 MB of rich and pygments in every process that
    fetches, for a function nothing here calls.  Before httpx is first
    imported, ``httpx._main`` is a stand-in whose ``main`` imports the real
    module when called; once httpx is imported, nothing else of it changes.
    """
    if "httpx" in sys.modules or "httpx._main" in sys.modules:
        return
    stand_in = types.ModuleType("httpx._main", "httpx's command line, imported when run")

    def main() -> None:
        sys.modules.pop("httpx._main", None)
        importlib.import_module("httpx._main").main()

    stand_in.main = main  # type: ignore[attr-defined]
    sys.modules["httpx._main"] = stand_in


_defer_httpx_cli()
