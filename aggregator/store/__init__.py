"""Persistence: the only package that talks to the database."""

from aggregator.store.engine import (
    DEFAULT_DATABASE_URL,
    DatabaseURLError,
    SchemaNotReady,
    make_engine,
    upgrade,
)
from aggregator.store.feeds import Claim, FeedState, FeedUpdate, LeaseLost
from aggregator.store.store import (
    IngestItem,
    IngestJob,
    IngestResult,
    Reprocessed,
    ReprocessResult,
    Store,
    StoredEntry,
    StoredPost,
)

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
