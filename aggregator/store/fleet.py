"""Queries for a fleet of daemons on one database (issue 17).

Kept apart from :mod:`aggregator.store.store` (posts, ingest) because they
answer the fleet's questions -- how the feed table looks as a whole, which
daemons are alive -- and every daemon asks them on a timer, so each is one
statement that stays cheap at 30,000 feeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import and_, case, func, not_, select

from aggregator.store import models as m
from aggregator.store.rows import DaemonRow

if TYPE_CHECKING:
    from aggregator.store.store import Store

__all__ = ["DaemonRow", "FeedSummary", "feed_summary", "fleet_daemons"]


@dataclass(frozen=True, slots=True)
class FeedSummary:
    """The feed table in a few numbers: for the bounded metrics gauges."""

    due: int
    leased: int
    active: int
    #: Feeds in feeds.yaml per state (``ok``, ``new``, ``failing``,
    #: ``throttled``, ``disabled``); removed feeds are not counted.
    by_state: dict[str, int]
    #: Seconds since the least recently successful active feed succeeded
    #: (since it was added, if never); None without active feeds.
    oldest_success_age: float | None


def feed_summary(store: Store, *, now: datetime) -> FeedSummary:
    """Count the feeds by state, and find the oldest success, in one query."""
    feed = m.Feed
    listed = feed.in_config.is_(True)
    active = and_(listed, feed.enabled.is_(True), feed.disabled_reason.is_(None))
    leased = and_(feed.lease_until.is_not(None), feed.lease_until >= now)
    state = case(
        (not_(active), "disabled"),
        (feed.last_checked_at.is_(None), "new"),
        (and_(feed.error_streak > 0, feed.error_class == "throttled"), "throttled"),
        (feed.error_streak > 0, "failing"),
        else_="ok",
    )
    totals = select(
        func.count().filter(and_(active, feed.next_check_at <= now, not_(leased))),
        func.count().filter(leased),
        func.count().filter(active),
        func.min(func.coalesce(feed.last_success_at, feed.created_at)).filter(active),
    ).select_from(feed)
    by_state = select(state, func.count()).where(listed).group_by(state)
    with store.engine.connect() as conn:
        due, leased_n, active_n, oldest = conn.execute(totals).one()
        states = {str(name): int(n) for name, n in conn.execute(by_state)}
    if isinstance(oldest, str):  # SQLite, should the aggregate lose the column type
        oldest = datetime.fromisoformat(oldest)
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=now.tzinfo)  # stored as naive UTC
    age = None if oldest is None else max((now - oldest).total_seconds(), 0.0)
    return FeedSummary(
        due=int(due),
        leased=int(leased_n),
        active=int(active_n),
        by_state=states,
        oldest_success_age=age,
    )


def fleet_daemons(store: Store, *, now: datetime) -> list[DaemonRow]:
    """The registered daemons with the leases each holds, in one query."""
    leases = (
        select(func.count())
        .where(m.Feed.lease_owner == m.Daemon.id, m.Feed.lease_until >= now)
        .scalar_subquery()
    )
    query = select(
        m.Daemon.id,
        m.Daemon.host,
        m.Daemon.pid,
        m.Daemon.started_at,
        m.Daemon.heartbeat_at,
        leases,
    ).order_by(m.Daemon.host, m.Daemon.pid)
    with store.engine.connect() as conn:
        return [
            DaemonRow(owner, host, pid, started, beat, int(leases))
            for owner, host, pid, started, beat, leases in conn.execute(query)
        ]
