"""Rows of the store as plain records, importable without SQLAlchemy.

``aggregator status`` and a ``fetch`` with nothing to poll read the
database through :mod:`aggregator.store.lite` (the standard library's
sqlite3) so that they start in a tenth of a second; the records they
return are these, the same the SQLAlchemy store returns, so both paths
hand the same values to the same tables (tests/test_light_paths.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aggregator.config.spec import FeedSpec
    from aggregator.store import models as m

__all__ = ["SYNC_COLUMNS", "DaemonRow", "FeedState", "PublisherRow", "sync_columns"]


@dataclass(frozen=True, slots=True)
class FeedState:
    """A feed row as plain data, detached from any session."""

    id: int
    url: str
    outlet: str
    section: str
    enabled: bool
    in_config: bool
    interval_seconds: int
    next_check_at: datetime | None
    lease_until: datetime | None
    etag: str | None
    last_modified: str | None
    last_checked_at: datetime | None
    last_success_at: datetime | None
    last_status: int | None
    last_error: str | None
    error_class: str | None
    error_streak: int
    first_error_at: datetime | None
    disabled_reason: str | None
    rsshub_route: str | None = None
    posts: int = 0
    blocked: int = 0  # stored entries a filter rule keeps out of the export

    @classmethod
    def of(cls, row: m.Feed, *, posts: int = 0, blocked: int = 0) -> FeedState:
        return cls(
            id=row.id,
            url=row.url,
            outlet=row.outlet,
            section=row.section,
            enabled=row.enabled,
            in_config=row.in_config,
            interval_seconds=row.interval_seconds,
            next_check_at=row.next_check_at,
            lease_until=row.lease_until,
            etag=row.etag,
            last_modified=row.last_modified,
            last_checked_at=row.last_checked_at,
            last_success_at=row.last_success_at,
            last_status=row.last_status,
            last_error=row.last_error,
            error_class=row.error_class,
            error_streak=row.error_streak,
            first_error_at=row.first_error_at,
            disabled_reason=row.disabled_reason,
            rsshub_route=row.rsshub_route,
            posts=posts,
            blocked=blocked,
        )

    @property
    def active(self) -> bool:
        """Whether the daemon should poll this feed at all."""
        return self.enabled and self.in_config and self.disabled_reason is None


@dataclass(frozen=True, slots=True)
class PublisherRow:
    """A publisher's state as stored (``queue``: undelivered rows, for webhooks)."""

    name: str
    last_run_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    pending: int
    queue: int


#: The feeds columns that feeds.yaml decides (``Store.sync_feeds`` writes them).
SYNC_COLUMNS = (
    "outlet",
    "section",
    "group_name",
    "rsshub_route",
    "enabled",
    "in_config",
    "interval_seconds",
    "host",
)


def sync_columns(spec: FeedSpec) -> dict[str, Any]:
    """What a feed's row holds in :data:`SYNC_COLUMNS` once it is synced with ``spec``."""
    # Imported here: this module is read by `status` (through store.lite),
    # which needs none of the fleet's claim planning that module holds.
    from aggregator.policy.fleet import host_of

    return {
        "outlet": spec.outlet,
        "section": spec.section,
        "group_name": spec.group,
        "rsshub_route": spec.rsshub_route,
        "enabled": spec.enabled,
        "in_config": True,
        "interval_seconds": max(1, round(spec.interval.total_seconds())),
        "host": host_of(spec.url) or None,
    }


@dataclass(frozen=True, slots=True)
class DaemonRow:
    """One registered daemon, for ``aggregator status``."""

    owner: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    leases: int  # feeds it holds a lease on now
