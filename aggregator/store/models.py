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
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "Base",
    "Daemon",
    "Entry",
    "ExportedFile",
    "Feed",
    "HostSlot",
    "Post",
    "PostRevision",
    "UTCDateTime",
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

    __table_args__ = (Index(None, "next_check_at"), Index(None, "host"))


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
