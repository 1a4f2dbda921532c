"""Poll history: one row per poll, written by the pipeline, pruned by the daemon.

Functions over an :class:`~sqlalchemy.engine.Engine` (the Store's), kept out
of ``store.py`` so the page's needs do not grow the core class.

Retention, and why: a daemon with 30,000 feeds polled every 15 minutes makes
about 2.9 million polls a day.  The page needs the last 24 hours for its
header chart and a feed's recent polls for ``/feeds/<id>``; keeping every
poll for a month would be ~90 million rows for nothing.  So
:func:`prune_polls` keeps every poll of the last :data:`KEEP_ALL` (48 h, so
the 24-hour chart is always whole), and beyond that only each feed's last
:data:`KEEP_PER_FEED` polls, and nothing older than :data:`KEEP_AT_MOST`
(30 days): a feed polled once a day still shows a month of history, a busy
one its last few days.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, cast

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Connection, Engine

from aggregator.store import models as m

if TYPE_CHECKING:
    from sqlalchemy import Table

__all__ = [
    "KEEP_ALL",
    "KEEP_AT_MOST",
    "KEEP_PER_FEED",
    "PollRecord",
    "insert_polls",
    "prune_polls",
    "record_polls",
    "reenable_feed",
    "request_poll",
]

#: Every poll younger than this is kept (the header chart shows 24 hours).
KEEP_ALL: Final = timedelta(hours=48)
#: Beyond KEEP_ALL, each feed keeps at most this many of its newest polls.
KEEP_PER_FEED: Final = 50
#: Nothing older than this is kept.
KEEP_AT_MOST: Final = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class PollRecord:
    """What one poll did, as stored in ``polls`` (see :class:`aggregator.store.models.Poll`)."""

    feed_id: int
    started_at: datetime
    status: int | None
    duration_ms: int
    bytes: int
    new: int
    updated: int
    error_class: str | None
    message: str | None
    schedule: str | None
    next_check_at: datetime | None


_POLL_FIELDS: Final = tuple(f.name for f in fields(PollRecord))
#: Core, not the ORM: no bulk-insert setup per batch.
_INSERT_POLL: Final = insert(cast("Table", m.Poll.__table__))
#: One ``poll_hours`` upsert statement per dialect, built once (see :func:`_hour_upsert`).
_HOUR_UPSERTS: dict[str, Any] = {}


def record_polls(engine: Engine, records: Sequence[PollRecord]) -> None:
    """Insert poll rows and add them to the hourly counts, in one transaction."""
    if not records:
        return
    with engine.begin() as connection:
        insert_polls(connection, records)


def insert_polls(connection: Connection, records: Sequence[PollRecord]) -> None:
    """:func:`record_polls` inside the caller's transaction (the daemon writes a
    batch of polls together with their feed rows: ``Store.finish_polls``)."""
    if not records:
        return
    hours: dict[datetime, list[int]] = {}
    for r in records:
        counts = hours.setdefault(
            r.started_at.replace(minute=0, second=0, microsecond=0), [0, 0, 0]
        )
        counts[0] += 1
        counts[1] += r.error_class is not None
        counts[2] += r.new
    # Not dataclasses.asdict: it deep-copies every value, and that copying
    # cost more than the INSERT on a round of 304s.
    connection.execute(
        _INSERT_POLL, [{name: getattr(r, name) for name in _POLL_FIELDS} for r in records]
    )
    connection.execute(
        _hour_upsert(connection.dialect.name),
        [
            {"b_hour": hour, "b_polls": polls, "b_failed": failed, "b_new": new}
            for hour, (polls, failed, new) in sorted(hours.items())
        ],
    )


def _hour_upsert(dialect: str) -> Any:
    """INSERT ... ON CONFLICT (hour) DO UPDATE adding to the counts, on both
    backends, so daemons sharing a PostgreSQL add to the same row safely."""
    statement = _HOUR_UPSERTS.get(dialect)
    if statement is None:
        upsert = _dialect_insert(dialect)(cast("Table", m.PollHour.__table__)).values(
            hour=bindparam("b_hour"),
            polls=bindparam("b_polls"),
            failed=bindparam("b_failed"),
            new=bindparam("b_new"),
        )
        statement = _HOUR_UPSERTS[dialect] = upsert.on_conflict_do_update(
            index_elements=[m.PollHour.hour],
            set_={
                "polls": m.PollHour.polls + upsert.excluded.polls,
                "failed": m.PollHour.failed + upsert.excluded.failed,
                "new": m.PollHour.new + upsert.excluded.new,
            },
        )
    return statement


def _dialect_insert(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def prune_polls(
    engine: Engine,
    *,
    now: datetime,
    keep_all: timedelta = KEEP_ALL,
    keep_per_feed: int = KEEP_PER_FEED,
    keep_at_most: timedelta = KEEP_AT_MOST,
) -> int:
    """Delete polls beyond the retention (module docstring); returns how many."""
    with engine.begin() as connection:
        removed = connection.execute(
            delete(m.Poll).where(m.Poll.started_at < now - keep_at_most)
        ).rowcount
        connection.execute(delete(m.PollHour).where(m.PollHour.hour < now - keep_at_most))
        ranked = (
            select(
                m.Poll.id,
                func.row_number()
                .over(partition_by=m.Poll.feed_id, order_by=m.Poll.started_at.desc())
                .label("rank"),
            )
            .where(m.Poll.started_at < now - keep_all)
            .subquery()
        )
        # The per-feed rank counts only the polls older than keep_all, so a
        # feed keeps its last keep_per_feed polls of before then as well.
        removed += connection.execute(
            delete(m.Poll).where(
                m.Poll.id.in_(select(ranked.c.id).where(ranked.c.rank > keep_per_feed))
            )
        ).rowcount
    return int(removed or 0)


# --------------------------------------------------------------------------
# The page's two actions (only with a token; see aggregator.service.web)


def request_poll(engine: Engine, feed_id: int, *, now: datetime) -> bool:
    """Make a feed due now; the daemon's claim loop (any daemon) polls it within a second.

    Writing the schedule rather than calling into the running daemon is what
    makes it work with several daemons on one database (the lease decides
    which one polls).  Disabled or removed feeds are not made due: False.
    """
    with engine.begin() as connection:
        changed = connection.execute(
            update(m.Feed)
            .where(
                m.Feed.id == feed_id,
                m.Feed.enabled.is_(True),
                m.Feed.in_config.is_(True),
                m.Feed.disabled_reason.is_(None),
            )
            .values(next_check_at=now)
        ).rowcount
    return bool(changed)


def reenable_feed(engine: Engine, feed_id: int, *, now: datetime) -> bool:
    """Clear a feed's ``disabled_reason`` (set by the error policy) and make it due now.

    Its error streak restarts, so one more failure does not disable it
    again at once.  A feed switched off in feeds.yaml (``enabled: false``)
    stays off: that is the operator's file speaking.  False if nothing was
    disabled.
    """
    with engine.begin() as connection:
        changed = connection.execute(
            update(m.Feed)
            .where(m.Feed.id == feed_id, m.Feed.disabled_reason.is_not(None))
            .values(
                disabled_reason=None,
                error_streak=0,
                first_error_at=None,
                next_check_at=now,
            )
        ).rowcount
    return bool(changed)
