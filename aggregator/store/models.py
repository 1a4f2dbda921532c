"""SQLAlchemy models: the schema the Alembic migrations build.

Everything the daemon must remember across a restart lives here: each feed's
schedule, HTTP validators and error state (on ``feeds``), each item as
fetched (``entries.raw``, so clean-up can be re-run without refetching), and
the posts themselves with their earlier revisions, and which version of each
post was written into which export directory (``exports``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    DDL,
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "SEARCH_TABLE",
    "Base",
    "Daemon",
    "Entry",
    "ExportedFile",
    "Feed",
    "HostSlot",
    "Poll",
    "PollHour",
    "Post",
    "PostRevision",
    "PublisherState",
    "UTCDateTime",
    "WebhookDelivery",
    "is_search_object",
    "search_index_ddl",
    "utcnow",
]


def utcnow() -> datetime:
    """Now, aware, in UTC, whole seconds dropped to microseconds as stored."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend.

    SQLite has no time zones and hands back naive values; storing naive UTC
    and re-attaching UTC on the way out gives the same aware values that
    PostgreSQL's ``timestamptz`` does, so no caller ever compares naive with
    aware.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# Explicit constraint names so migrations are the same on every backend.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Feed(Base):
    """One outlet feed: what feeds.yaml says, plus its polling state."""

    __tablename__ = "feeds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(2048), unique=True)
    outlet: Mapped[str] = mapped_column(String(512))
    section: Mapped[str] = mapped_column(String(512))
    group_name: Mapped[str] = mapped_column(String(512))
    rsshub_route: Mapped[str | None] = mapped_column(String(1024))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # False once the feed is removed from feeds.yaml; its posts stay.
    in_config: Mapped[bool] = mapped_column(Boolean, default=True)
    interval_seconds: Mapped[int] = mapped_column(Integer, default=900)

    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    # The fencing token (issue 17): raised by every claim and every release,
    # so a poll that outlived its lease finds another number here and its
    # results are refused (Store.ingest / update_feeds check it).
    lease_token: Mapped[int] = mapped_column(Integer, server_default="0")
    # The URL's host, lowercase: claims keep each host's politeness fleet-wide.
    host: Mapped[str | None] = mapped_column(String(255))

    etag: Mapped[str | None] = mapped_column(String(1024))
    last_modified: Mapped[str | None] = mapped_column(String(128))
    last_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    error_class: Mapped[str | None] = mapped_column(String(32))
    error_streak: Mapped[int] = mapped_column(Integer, default=0)
    first_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_reason: Mapped[str | None] = mapped_column(Text)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index(None, "next_check_at"),
        # A claim reads each host's earliest due feeds (store.feeds.claim_fair):
        # one short range of this index per host, never the whole due set.
        Index(None, "host", "next_check_at"),
        # ... and counts each host's leases: only leased rows are in this one,
        # a few dozen at any time, so the count never touches the 30,000.
        Index(
            "ix_feeds_leased_host",
            "host",
            postgresql_where=text("lease_owner IS NOT NULL"),
            sqlite_where=text("lease_owner IS NOT NULL"),
        ),
    )


class Daemon(Base):
    """One running ``aggregator run`` process, alive while its heartbeat is fresh.

    The daemon writes ``heartbeat_at`` every few seconds; any daemon finding
    another's heartbeat stale deletes its row and hands its leases back, so
    the feeds of a daemon killed on another machine are polled again within
    a minute instead of when their leases expire (issue 17).
    """

    __tablename__ = "daemons"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)  # the lease owner name
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)


class HostSlot(Base):
    """One host's politeness across the fleet (aggregator.policy.fleet): when
    its next request may start, and which daemon polls it while it has a
    ``min_spacing`` (one at a time, so that daemon's fetcher spaces the starts)."""

    __tablename__ = "hosts"

    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    next_start_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    holder: Mapped[str | None] = mapped_column(String(128))
    held_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Post(Base):
    """A post in the seed format, stored once per content hash."""

    __tablename__ = "posts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Export file stem, fixed at creation so edits rewrite the same file.
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(Text)
    group_name: Mapped[str] = mapped_column(String(512))
    outlet: Mapped[str] = mapped_column(String(512))
    section: Mapped[str] = mapped_column(String(512))
    headimg: Mapped[str] = mapped_column(Text, default="")
    thumbnail: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str] = mapped_column(String(512), default="")
    comments: Mapped[bool] = mapped_column(Boolean, default=False)
    # None means the replayed file said "Invalid Date".
    date: Mapped[datetime | None] = mapped_column(UTCDateTime)
    body: Mapped[str] = mapped_column(Text)
    link: Mapped[str | None] = mapped_column(Text)
    feed_id: Mapped[int | None] = mapped_column(ForeignKey("feeds.id", ondelete="SET NULL"))
    revision: Mapped[int] = mapped_column(Integer, default=0)
    # When the publisher last edited it (rendered as ``updated:``); None if never.
    revised_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # How a replayed archive file spelled its front matter and body ends
    # (``aggregator.hexo.post.Layout.as_dict``), so export writes it back byte for
    # byte; None for fetched posts, which are written in the canonical layout.
    layout: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    # Why it is not exported (a block rule), or None.  Set only when every
    # entry of the post is blocked: a story one feed blocks and another keeps
    # is kept.
    blocked: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    entries: Mapped[list[Entry]] = relationship(back_populates="post")

    __table_args__ = (Index(None, "outlet", "date"), Index(None, "feed_id"))


class Entry(Base):
    """One item as a feed delivered it; several entries may share a post."""

    __tablename__ = "entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(2048))
    guid: Mapped[str | None] = mapped_column(Text)
    link: Mapped[str | None] = mapped_column(Text)
    # dedup.canonical_link(link), to find an item whose guid or key changed.
    link_key: Mapped[str | None] = mapped_column(String(2048))
    author: Mapped[str | None] = mapped_column(Text)
    # The feed rule that blocked this entry, or None.
    blocked: Mapped[str | None] = mapped_column(Text)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
    raw: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    post: Mapped[Post] = relationship(back_populates="entries")

    __table_args__ = (
        UniqueConstraint("feed_id", "key"),
        Index(None, "post_id"),
        Index(None, "feed_id", "link_key"),
    )


class PostRevision(Base):
    """A post's content before an edit replaced it (kept, never exported)."""

    __tablename__ = "post_revisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    # Indexed: an item carrying a post's earlier content is that post's duplicate.
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    date: Mapped[datetime | None] = mapped_column(UTCDateTime)
    headimg: Mapped[str] = mapped_column(Text, default="")
    replaced_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ExportedFile(Base):
    """A post's file in one export directory, as last written there (the export ledger).

    Files are written after the posts are committed, so a crash, a full disk
    or a read-only directory can leave stored posts without their file; this
    row, added only once the file's rename succeeded, is what lets the next
    pass find and write what is missing (see aggregator.store.exports).
    """

    __tablename__ = "exports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # NULL once the post is gone: the row then says which file to remove.
    post_id: Mapped[int | None] = mapped_column(ForeignKey("posts.id", ondelete="SET NULL"))
    # The export directory, resolved to an absolute path.
    directory: Mapped[str] = mapped_column(Text)
    file_name: Mapped[str] = mapped_column(String(255))
    # The post's revision and updated_at when its file was written: either
    # differing from the post's now means the file is out of date (reprocess
    # changes content without a new revision, but always moves updated_at).
    revision: Mapped[int] = mapped_column(Integer)
    post_updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    written_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("directory", "post_id"), Index(None, "post_id"))


class PublisherState(Base):
    """One publisher's last outcome (issue 16): what status, /metrics and the page show.

    ``name`` is ``git``, ``command`` or ``webhook:<name>``.  For a webhook,
    ``cursor`` is the highest ``exports.id`` already turned into deliveries
    (set to the newest row when the webhook is first seen, so adding one does
    not send the whole archive); ``pending`` is what was left to do after the
    last round (unpushed commits for git; a webhook's queue is counted from
    ``webhook_deliveries``).
    """

    __tablename__ = "publishers"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    # A webhook's first cursor: exports rows up to it are never sent.
    start: Mapped[int | None] = mapped_column(Integer)
    cursor: Mapped[int | None] = mapped_column(Integer)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pending: Mapped[int] = mapped_column(Integer, default=0)


class WebhookDelivery(Base):
    """The webhook outbox: one row per (webhook, post), kept until delivered and after.

    The body is stored as sent, so a retry sends the same bytes with the same
    signature and ``key`` (the ``Idempotency-Key`` header).  A row is marked
    delivered only on a 2xx answer: delivery is at least once, and the
    unique (webhook, post_id) means a post is queued for a webhook once.
    """

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook: Mapped[str] = mapped_column(String(128))
    post_id: Mapped[int | None] = mapped_column(ForeignKey("posts.id", ondelete="SET NULL"))
    key: Mapped[str] = mapped_column(String(64), unique=True)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("webhook", "post_id"),
        Index(None, "webhook", "delivered_at", "next_attempt_at"),
        Index(None, "post_id"),
    )
class Poll(Base):
    """One poll of one feed, as the operator's page shows it (issue 16).

    Written by the pipeline after it applied the poll's result
    (``aggregator.store.polls.record_polls``) and pruned by the daemon's
    housekeeping (``prune_polls``), so the table holds a bounded history:
    the feed row keeps only the *last* outcome, which cannot say "failing
    every other poll since Tuesday".
    """

    __tablename__ = "polls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # HTTP status, or None when no response came (timeout, refused, DNS).
    status: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    bytes: Mapped[int] = mapped_column(Integer, default=0)
    new: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    # None for a good poll; else the feed row's error_class (or a warm-up outcome).
    error_class: Mapped[str | None] = mapped_column(String(32))
    message: Mapped[str | None] = mapped_column(Text)
    # Why the next poll is when it is ("interval", "max-age 3600 s", "back-off" ...).
    schedule: Mapped[str | None] = mapped_column(Text)
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index(None, "feed_id", "started_at"), Index(None, "started_at"))


class PollHour(Base):
    """Polls, failed polls and new posts per hour: the page's 24-hour chart.

    Kept by :func:`aggregator.store.polls.record_polls` beside the poll
    rows (an upsert per hour and batch), so the chart reads 24 rows instead
    of aggregating the ~700,000 polls a day of 30,000 feeds.
    """

    __tablename__ = "poll_hours"

    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    polls: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    new: Mapped[int] = mapped_column(Integer, default=0)


# The operator's page sorts 30,000 feeds by name and pages through them:
# declared here, beside the page's other tables, rather than on Feed.
# The id is the table's tie-breaker, so the index gives the page's exact order.
Index(None, Feed.group_name, Feed.outlet, Feed.section, Feed.id)


# --------------------------------------------------------------------------
# Title search: the database's own full-text index, outside the ORM.
#
# SQLite: an FTS5 table over posts.title with the trigram tokenizer (titles
# are mostly Chinese, written without spaces; unicode61 would make a whole
# clause one token, trigram finds any run of 3+ characters), kept in step by
# triggers.  PostgreSQL: a GIN index on to_tsvector('simple', title).
# Neither can be declared on the models, so the same statements are run by
# migration 0007 and, through the DDL events below, by create_all on a new
# database: both ways build the same schema (tests/test_store.py).

#: The FTS5 table (and the prefix of its shadow tables) on SQLite.
SEARCH_TABLE = "posts_fts"
_SEARCH_INDEX = "ix_posts_title_tsv"

_SQLITE_SEARCH = (
    f"CREATE VIRTUAL TABLE {SEARCH_TABLE} USING fts5("
    "title, content='posts', content_rowid='id', tokenize='trigram')",
    f"CREATE TRIGGER {SEARCH_TABLE}_ai AFTER INSERT ON posts BEGIN "
    f"INSERT INTO {SEARCH_TABLE}(rowid, title) VALUES (new.id, new.title); END",
    f"CREATE TRIGGER {SEARCH_TABLE}_ad AFTER DELETE ON posts BEGIN "
    f"INSERT INTO {SEARCH_TABLE}({SEARCH_TABLE}, rowid, title) "
    "VALUES ('delete', old.id, old.title); END",
    f"CREATE TRIGGER {SEARCH_TABLE}_au AFTER UPDATE OF title ON posts BEGIN "
    f"INSERT INTO {SEARCH_TABLE}({SEARCH_TABLE}, rowid, title) "
    "VALUES ('delete', old.id, old.title); "
    f"INSERT INTO {SEARCH_TABLE}(rowid, title) VALUES (new.id, new.title); END",
)
_POSTGRES_SEARCH = (
    f"CREATE INDEX IF NOT EXISTS {_SEARCH_INDEX} ON posts USING gin (to_tsvector('simple', title))",
)


def search_index_ddl(dialect: str, *, drop: bool = False) -> tuple[str, ...]:
    """The statements that create (or drop) the title search index on ``dialect``."""
    if dialect == "sqlite":
        if drop:
            return (
                *(f"DROP TRIGGER IF EXISTS {SEARCH_TABLE}_{s}" for s in ("ai", "ad", "au")),
                f"DROP TABLE IF EXISTS {SEARCH_TABLE}",
            )
        return _SQLITE_SEARCH
    if dialect == "postgresql":
        return (f"DROP INDEX IF EXISTS {_SEARCH_INDEX}",) if drop else _POSTGRES_SEARCH
    return ()


def is_search_object(name: str | None) -> bool:
    """Whether a table or index is part of the search index (not on the models)."""
    return bool(name) and (str(name).startswith(SEARCH_TABLE) or name == _SEARCH_INDEX)


for _dialect in ("sqlite", "postgresql"):
    for _statement in search_index_ddl(_dialect):
        _ddl = DDL(_statement)  # type: ignore[no-untyped-call]
        event.listen(Post.__table__, "after_create", _ddl.execute_if(dialect=_dialect))
for _statement in search_index_ddl("sqlite", drop=True):
    _ddl = DDL(_statement)  # type: ignore[no-untyped-call]
    event.listen(Post.__table__, "before_drop", _ddl.execute_if(dialect="sqlite"))
