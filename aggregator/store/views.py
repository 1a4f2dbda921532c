"""The operator's page's read queries (``aggregator.service.web``), as plain data.

Functions over the Store's :class:`~sqlalchemy.engine.Engine`, kept out of
``store.py`` (they only read, and only the page needs them).  Built for
30,000 feeds: a page of the feed table is one query over ``feeds`` (sorted
and cut in the database) and two small ones keyed by the page's feed ids
(post counts, per-day sparkline); nothing here loads every feed, post or
poll.  Titles are searched with the database's own full-text index
(:func:`newest_posts`; the index is built by migration 0007, see
``aggregator.store.models.search_index_ddl``).

Feed *states* (the page's filter) are decided in one place,
:func:`feed_state`, and mirrored as SQL by :func:`_state_condition`; the
precedence is removed > disabled > warming > throttled > failing > ok.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    and_,
    case,
    cast,
    column,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    table,
    text,
)
from sqlalchemy import Integer as SAInteger
from sqlalchemy.engine import Connection, Engine

from aggregator.store import models as m
from aggregator.store.polls import PollRecord

__all__ = [
    "SORTS",
    "STATES",
    "FeedDetail",
    "FeedPage",
    "FeedRow",
    "HourBucket",
    "PostPage",
    "PostRow",
    "Totals",
    "feed_detail",
    "feed_page",
    "feed_state",
    "hourly",
    "newest_posts",
    "summary",
    "totals",
]

#: The states a feed can be in, in the page's filter order.
STATES: Final = ("ok", "failing", "throttled", "warming", "disabled", "removed")
#: error_class values that are waits, not errors (aggregator.policy.rsshub outcomes).
_WARMING: Final = ("warming", "cold_timeout")
_THROTTLED: Final = "throttled"
#: The table's sort keys -> columns (posts stored is per page, so not a key).
SORTS: Final[dict[str, Any]] = {
    "name": (m.Feed.group_name, m.Feed.outlet, m.Feed.section),
    "url": (m.Feed.url,),
    "last": (m.Feed.last_checked_at,),
    "next": (m.Feed.next_check_at,),
    "streak": (m.Feed.error_streak,),
    "status": (m.Feed.last_status,),
}
SPARK_DAYS: Final = 30
HOURS: Final = 24


def feed_state(
    *,
    in_config: bool,
    enabled: bool,
    disabled_reason: str | None,
    error_class: str | None,
) -> str:
    """One feed's state for the page (module docstring: the precedence)."""
    if not in_config:
        return "removed"
    if not enabled or disabled_reason is not None:
        return "disabled"
    if error_class in _WARMING:
        return "warming"
    if error_class == _THROTTLED:
        return "throttled"
    if error_class is not None:
        return "failing"
    return "ok"


def _state_condition(state: str) -> ColumnElement[bool]:
    """:func:`feed_state` as a WHERE clause; ValueError for an unknown state."""
    feed = m.Feed
    present = feed.in_config.is_(True)
    active = and_(present, feed.enabled.is_(True), feed.disabled_reason.is_(None))
    cls = feed.error_class
    conditions: dict[str, ColumnElement[bool]] = {
        "removed": feed.in_config.is_(False),
        "disabled": and_(
            present, not_(and_(feed.enabled.is_(True), feed.disabled_reason.is_(None)))
        ),
        "warming": and_(active, cls.in_(_WARMING)),
        "throttled": and_(active, cls == _THROTTLED),
        "failing": and_(active, cls.is_not(None), cls.not_in((*_WARMING, _THROTTLED))),
        "ok": and_(active, cls.is_(None)),
    }
    if state not in conditions:
        raise ValueError(f"unknown feed state {state!r}: use one of {', '.join(STATES)}")
    return conditions[state]


def _epoch(moment: Any, dialect: str) -> ColumnElement[int]:
    """Seconds since 1970 of a UTCDateTime column, as an integer, in SQL."""
    if dialect == "sqlite":  # stored as naive UTC text
        return cast(func.strftime("%s", moment), SAInteger)
    return cast(func.extract("epoch", moment), SAInteger)


# --------------------------------------------------------------------------
# The feed table


@dataclass(frozen=True, slots=True)
class FeedRow:
    """One line of the feed table; ``url`` is as stored (the page redacts it)."""

    id: int
    url: str
    group: str
    outlet: str
    section: str
    state: str
    rsshub_route: str | None
    interval_seconds: int
    last_checked_at: datetime | None
    last_success_at: datetime | None
    last_status: int | None
    last_error: str | None
    error_class: str | None
    error_streak: int
    next_check_at: datetime | None
    disabled_reason: str | None
    posts: int = 0
    blocked: int = 0
    #: New posts per day, oldest first, SPARK_DAYS values (today last).
    spark: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class FeedPage:
    rows: list[FeedRow]
    total: int  # rows matching the filter
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))


_FEED_COLUMNS = (
    m.Feed.id,
    m.Feed.url,
    m.Feed.group_name,
    m.Feed.outlet,
    m.Feed.section,
    m.Feed.in_config,
    m.Feed.enabled,
    m.Feed.rsshub_route,
    m.Feed.interval_seconds,
    m.Feed.last_checked_at,
    m.Feed.last_success_at,
    m.Feed.last_status,
    m.Feed.last_error,
    m.Feed.error_class,
    m.Feed.error_streak,
    m.Feed.next_check_at,
    m.Feed.disabled_reason,
)


def _feed_row(r: Any, **extra: Any) -> FeedRow:
    return FeedRow(
        id=r.id,
        url=r.url,
        group=r.group_name,
        outlet=r.outlet,
        section=r.section,
        state=feed_state(
            in_config=r.in_config,
            enabled=r.enabled,
            disabled_reason=r.disabled_reason,
            error_class=r.error_class,
        ),
        rsshub_route=r.rsshub_route,
        interval_seconds=r.interval_seconds,
        last_checked_at=r.last_checked_at,
        last_success_at=r.last_success_at,
        last_status=r.last_status,
        last_error=r.last_error,
        error_class=r.error_class,
        error_streak=r.error_streak,
        next_check_at=r.next_check_at,
        disabled_reason=r.disabled_reason,
        **extra,
    )


def feed_page(
    engine: Engine,
    *,
    now: datetime,
    state: str | None = None,
    sort: str = "name",
    descending: bool = False,
    page: int = 1,
    per_page: int = 100,
    query: str | None = None,
) -> FeedPage:
    """One page of the feed table, filtered by state and/or a name/URL substring."""
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}: use one of {', '.join(SORTS)}")
    conditions: list[ColumnElement[bool]] = []
    if state:
        conditions.append(_state_condition(state))
    page = max(1, page)
    with engine.connect() as connection:
        if query:
            pattern = "%" + _escape_like(query) + "%"
            columns = (m.Feed.outlet, m.Feed.group_name, m.Feed.section, m.Feed.url)
            # SQLite's LIKE already ignores ASCII case; its ILIKE is lower() on
            # both sides of every row, twice as slow over 30,000 feeds.
            if connection.dialect.name == "sqlite":
                conditions.append(or_(*(c.like(pattern, escape="\\") for c in columns)))
            else:
                # One ILIKE over the four joined, in the "C" collation: case is
                # folded for ASCII only (CJK has none), and it is 5x faster
                # than four ILIKEs in a linguistic collation over 30,000 rows.
                joined = func.concat_ws(" ", *columns).collate("C")
                conditions.append(joined.ilike(pattern, escape="\\"))
        where = and_(true_(), *conditions)
        order = [c.desc() if descending else c.asc() for c in SORTS[sort]]
        total = int(connection.scalar(select(func.count()).select_from(m.Feed).where(where)) or 0)
        # The page's ids first, sorted over narrow rows (or an index), then
        # their columns: sorting 30,000 whole rows to keep 100 costs 3-4x more.
        ids = list(
            connection.scalars(
                select(m.Feed.id)
                .where(where)
                .order_by(*order, m.Feed.id)
                .limit(per_page)
                .offset((page - 1) * per_page)
            )
        )
        found = {
            r.id: r for r in connection.execute(select(*_FEED_COLUMNS).where(m.Feed.id.in_(ids)))
        }
        rows = [found[i] for i in ids if i in found]
        counts = _post_counts(connection, ids)
        sparks = _sparklines(connection, ids, now=now)
    return FeedPage(
        rows=[
            _feed_row(
                r,
                posts=counts.get(r.id, (0, 0))[0],
                blocked=counts.get(r.id, (0, 0))[1],
                spark=sparks.get(r.id, (0,) * SPARK_DAYS),
            )
            for r in rows
        ],
        total=total,
        page=page,
        per_page=per_page,
    )


def true_() -> ColumnElement[bool]:
    return literal(True).is_(True)


def _escape_like(value: str) -> str:
    return re.sub(r"([\\%_])", r"\\\1", value)


def _post_counts(connection: Connection, ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    """Posts stored and entries blocked per feed, as ``aggregator status`` counts them."""
    if not ids:
        return {}
    rows = connection.execute(
        select(
            m.Entry.feed_id,
            func.count(func.distinct(m.Entry.post_id)),
            func.count(m.Entry.blocked),
        )
        .where(m.Entry.feed_id.in_(ids))
        .group_by(m.Entry.feed_id)
    ).all()
    return {feed_id: (int(posts), int(blocked)) for feed_id, posts, blocked in rows}


def _day_start(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def _sparklines(
    connection: Connection, ids: Sequence[int], *, now: datetime
) -> dict[int, tuple[int, ...]]:
    """New posts per day over SPARK_DAYS days for each feed (posts it brought first)."""
    if not ids:
        return {}
    start = _day_start(now) - timedelta(days=SPARK_DAYS - 1)
    dialect = connection.dialect.name
    day = (_epoch(m.Post.created_at, dialect) - int(start.timestamp())) // 86400
    rows = connection.execute(
        select(m.Post.feed_id, day.label("day"), func.count())
        .where(m.Post.feed_id.in_(ids), m.Post.created_at >= start)
        .group_by(m.Post.feed_id, text("day"))
    ).all()
    sparks: dict[int, list[int]] = {}
    for feed_id, index, count in rows:
        index = int(index)
        if feed_id is not None and 0 <= index < SPARK_DAYS:
            sparks.setdefault(feed_id, [0] * SPARK_DAYS)[index] += int(count)
    return {feed_id: tuple(days) for feed_id, days in sparks.items()}


# --------------------------------------------------------------------------
# The header: totals and the 24-hour chart


@dataclass(frozen=True, slots=True)
class Totals:
    feeds: int
    by_state: dict[str, int]
    posts: int
    polls_24h: int
    failed_24h: int
    new_24h: int


def totals(engine: Engine, *, now: datetime) -> Totals:
    """The header's numbers: feeds per state, posts, the last 24 hours' polls."""
    return summary(engine, now=now)[0]


def summary(
    engine: Engine, *, now: datetime, hours: int = HOURS
) -> tuple[Totals, list[HourBucket]]:
    """The header: :class:`Totals` and :func:`hourly`'s buckets, polls read once.

    The poll counts of the totals are the chart's sums (the current hour and
    the ``hours - 1`` before it).
    """
    feed = m.Feed
    state_sql = case(
        (feed.in_config.is_(False), "removed"),
        (or_(feed.enabled.is_(False), feed.disabled_reason.is_not(None)), "disabled"),
        (feed.error_class.in_(_WARMING), "warming"),
        (feed.error_class == _THROTTLED, "throttled"),
        (feed.error_class.is_not(None), "failing"),
        else_="ok",
    )
    with engine.connect() as connection:
        by_state = {s: 0 for s in STATES}
        for state, count in connection.execute(
            select(state_sql.label("state"), func.count()).group_by(text("state"))
        ):
            by_state[str(state)] = int(count)
        # Blocked posts are counted per feed in the table, not here: counting
        # them over every post reads the whole table (no index on blocked).
        posts = connection.execute(select(func.count()).select_from(m.Post)).scalar_one()
        buckets = _hourly(connection, now=now, hours=hours)
    return (
        Totals(
            feeds=sum(by_state.values()),
            by_state=by_state,
            posts=int(posts),
            polls_24h=sum(b.polls for b in buckets),
            failed_24h=sum(b.failed for b in buckets),
            new_24h=sum(b.new for b in buckets),
        ),
        buckets,
    )


@dataclass(frozen=True, slots=True)
class HourBucket:
    start: datetime
    polls: int = 0
    failed: int = 0
    new: int = 0


def hourly(engine: Engine, *, now: datetime, hours: int = HOURS) -> list[HourBucket]:
    """Polls, failed polls and new posts per hour over the last ``hours`` (oldest first)."""
    with engine.connect() as connection:
        return _hourly(connection, now=now, hours=hours)


def _hourly(connection: Connection, *, now: datetime, hours: int) -> list[HourBucket]:
    """From ``poll_hours`` (kept by ``record_polls``): ``hours`` rows, not every poll."""
    first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    rows = connection.execute(
        select(m.PollHour.hour, m.PollHour.polls, m.PollHour.failed, m.PollHour.new).where(
            m.PollHour.hour >= first
        )
    ).all()
    counts = {r.hour: (int(r.polls), int(r.failed), int(r.new)) for r in rows}
    starts = [first + timedelta(hours=i) for i in range(hours)]
    return [HourBucket(s, *counts.get(s, (0, 0, 0))) for s in starts]


# --------------------------------------------------------------------------
# One feed


@dataclass(frozen=True, slots=True)
class PostRow:
    id: int
    title: str
    group: str
    outlet: str
    section: str
    date: datetime | None
    created_at: datetime
    link: str | None
    feed_id: int | None
    blocked: str | None
    #: The post's file in an export directory (the export ledger), if written.
    file_name: str | None


@dataclass(frozen=True, slots=True)
class FeedDetail:
    feed: FeedRow
    polls: list[PollRecord]
    errors: list[PollRecord]
    posts: list[PostRow]
    first_error_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _poll_row(r: Any) -> PollRecord:
    return PollRecord(**r._mapping)


def feed_detail(
    engine: Engine, feed_id: int, *, now: datetime, polls: int = 50, posts: int = 20
) -> FeedDetail | None:
    """A feed's row, recent polls, recent failed polls and newest posts; None if no such feed."""
    poll_columns = (
        m.Poll.feed_id,
        m.Poll.started_at,
        m.Poll.status,
        m.Poll.duration_ms,
        m.Poll.bytes,
        m.Poll.new,
        m.Poll.updated,
        m.Poll.error_class,
        m.Poll.message,
        m.Poll.schedule,
        m.Poll.next_check_at,
    )
    with engine.connect() as connection:
        row = connection.execute(
            select(*_FEED_COLUMNS, m.Feed.first_error_at).where(m.Feed.id == feed_id)
        ).one_or_none()
        if row is None:
            return None
        counts = _post_counts(connection, [feed_id]).get(feed_id, (0, 0))
        spark = _sparklines(connection, [feed_id], now=now).get(feed_id, (0,) * SPARK_DAYS)
        recent = connection.execute(
            select(*poll_columns)
            .where(m.Poll.feed_id == feed_id)
            .order_by(m.Poll.started_at.desc(), m.Poll.id.desc())
            .limit(polls)
        ).all()
        errors = connection.execute(
            select(*poll_columns)
            .where(m.Poll.feed_id == feed_id, m.Poll.error_class.is_not(None))
            .order_by(m.Poll.started_at.desc(), m.Poll.id.desc())
            .limit(10)
        ).all()
        newest = _posts(connection, where=m.Post.feed_id == feed_id, limit=posts, offset=0)
    return FeedDetail(
        feed=_feed_row(row, posts=counts[0], blocked=counts[1], spark=spark),
        polls=[_poll_row(r) for r in recent],
        errors=[_poll_row(r) for r in errors],
        posts=newest,
        first_error_at=row.first_error_at,
    )


# --------------------------------------------------------------------------
# Posts and title search


@dataclass(frozen=True, slots=True)
class PostPage:
    rows: list[PostRow]
    page: int
    per_page: int
    has_next: bool
    query: str | None = None


def _posts(
    connection: Connection, *, where: ColumnElement[bool], limit: int, offset: int
) -> list[PostRow]:
    file_name = (
        select(func.min(m.ExportedFile.file_name))
        .where(m.ExportedFile.post_id == m.Post.id)
        .scalar_subquery()
    )
    rows = connection.execute(
        select(
            m.Post.id,
            m.Post.title,
            m.Post.group_name,
            m.Post.outlet,
            m.Post.section,
            m.Post.date,
            m.Post.created_at,
            m.Post.link,
            m.Post.feed_id,
            m.Post.blocked,
            file_name.label("file_name"),
        )
        .where(where)
        .order_by(m.Post.id.desc())  # the primary key: newest stored first, no sort
        .limit(limit)
        .offset(offset)
    ).all()
    return [
        PostRow(
            id=r.id,
            title=r.title,
            group=r.group_name,
            outlet=r.outlet,
            section=r.section,
            date=r.date,
            created_at=r.created_at,
            link=r.link,
            feed_id=r.feed_id,
            blocked=r.blocked,
            file_name=r.file_name,
        )
        for r in rows
    ]


_WORD_RE = re.compile(r"\w+", re.UNICODE)


def _title_match(dialect: str, query: str) -> ColumnElement[bool]:
    """``posts.title`` matches ``query``, through the full-text index.

    SQLite: the FTS5 trigram table, the query as one quoted phrase (so no
    FTS syntax from the search box reaches the parser); trigrams need three
    characters, so shorter queries fall back to LIKE.  PostgreSQL: every word
    of the query as a prefix (``word:*``) against ``to_tsvector('simple',
    title)``, which the GIN index answers.  The 'simple' configuration splits
    on spaces and punctuation only, so a Chinese clause is one token and a
    word inside it is not found by the index: for queries with non-ASCII
    letters the match also accepts ILIKE (a scan, but correct).
    """
    if dialect == "sqlite":
        if len(query) < 3:
            return m.Post.title.like("%" + _escape_like(query) + "%", escape="\\")
        phrase = '"' + query.replace('"', '""') + '"'
        fts = table(m.SEARCH_TABLE, column("rowid"))
        return m.Post.id.in_(
            select(fts.c.rowid).where(
                text(f"{m.SEARCH_TABLE} MATCH :phrase").bindparams(phrase=phrase)
            )
        )
    words = _WORD_RE.findall(query)
    conditions: list[ColumnElement[bool]] = []
    if words:
        # The same expression as the index (models.search_index_ddl), so it is used.
        simple: ColumnElement[Any] = literal_column("'simple'")
        tsquery = " & ".join(w + ":*" for w in words)
        conditions.append(
            func.to_tsvector(simple, m.Post.title).bool_op("@@")(func.to_tsquery(simple, tsquery))
        )
    if not query.isascii() or not words:
        # A scan either way: newest first, stopping at a page of hits.
        conditions.append(m.Post.title.ilike("%" + _escape_like(query) + "%", escape="\\"))
        return or_(*conditions)
    # Matches first (the GIN index), then the newest of them.  Left to
    # itself the planner walks the primary key backwards computing
    # to_tsvector for every post until it has a page of hits: 0.8 s over
    # 150,000 posts for a word that is in none of them.
    hits = select(m.Post.id).where(or_(*conditions)).cte("hits").prefix_with("MATERIALIZED")
    return m.Post.id.in_(select(hits.c.id))


def newest_posts(
    engine: Engine, *, query: str | None = None, page: int = 1, per_page: int = 50
) -> PostPage:
    """The newest stored posts, or those whose title matches ``query``."""
    page = max(1, page)
    query = (query or "").strip() or None
    with engine.connect() as connection:
        where = _title_match(connection.dialect.name, query) if query else true_()
        rows = _posts(connection, where=where, limit=per_page + 1, offset=(page - 1) * per_page)
    return PostPage(
        rows=rows[:per_page],
        page=page,
        per_page=per_page,
        has_next=len(rows) > per_page,
        query=query,
    )
