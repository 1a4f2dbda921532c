"""Persistence: the only package that talks to the database.

The entry points below are exported lazily (PEP 562): a parse worker that
imports :mod:`aggregator.store.records` for the :class:`IngestItem` type must
not load SQLAlchemy with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aggregator.store.engine import (
        DEFAULT_DATABASE_URL,
        DatabaseURLError,
        SchemaNotReady,
        make_engine,
        upgrade,
    )
    from aggregator.store.feeds import Claim, FeedUpdate, LeaseLost
    from aggregator.store.ingest import IngestJob, IngestResult
    from aggregator.store.posts import StoredPost
    from aggregator.store.records import IngestItem
    from aggregator.store.reprocess import Reprocessed, ReprocessResult, StoredEntry
    from aggregator.store.rows import FeedState
    from aggregator.store.store import Store

__all__ = [
    "DEFAULT_DATABASE_URL",
    "Claim",
    "DatabaseURLError",
    "FeedState",
    "FeedUpdate",
    "IngestItem",
    "IngestJob",
    "IngestResult",
    "LeaseLost",
    "ReprocessResult",
    "Reprocessed",
    "SchemaNotReady",
    "Store",
    "StoredEntry",
    "StoredPost",
    "make_engine",
    "upgrade",
]

_EXPORTS = {
    "DEFAULT_DATABASE_URL": "aggregator.store.engine",
    "DatabaseURLError": "aggregator.store.engine",
    "SchemaNotReady": "aggregator.store.engine",
    "make_engine": "aggregator.store.engine",
    "upgrade": "aggregator.store.engine",
    "FeedState": "aggregator.store.rows",
    "FeedUpdate": "aggregator.store.feeds",
    "Claim": "aggregator.store.feeds",
    "LeaseLost": "aggregator.store.feeds",
    "IngestItem": "aggregator.store.records",
    "IngestJob": "aggregator.store.ingest",
    "IngestResult": "aggregator.store.ingest",
    "StoredPost": "aggregator.store.posts",
    "Reprocessed": "aggregator.store.reprocess",
    "ReprocessResult": "aggregator.store.reprocess",
    "StoredEntry": "aggregator.store.reprocess",
    "Store": "aggregator.store.store",
}


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
