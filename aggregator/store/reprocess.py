"""Stored entries out, re-derived posts back in: the store's side of ``aggregator reprocess``.

The raw entries are kept (ARCHITECTURE invariant 7) so the content stage
can run again without the network; ``service.reprocess`` reads them here
(:meth:`ReprocessMixin.iter_entries`), rebuilds each post, and hands the
results back to :meth:`ReprocessMixin.reprocess`, one transaction a batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from aggregator.hexo import post as fmt
from aggregator.policy.dedup import content_hash
from aggregator.store import models as m
from aggregator.store.posts import StoredPost, note_export, post_values, refresh_blocked, revise

__all__ = ["ReprocessMixin", "ReprocessResult", "Reprocessed", "StoredEntry"]

#: The columns a re-run of the content stage updates in place when the
#: content hash stays (see :func:`_reapply`).
_REDERIVED: Final = (
    "title",
    "body",
    "headimg",
    "thumbnail",
    "date",
    "group_name",
    "outlet",
    "section",
)


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """An entry as stored, for ``aggregator reprocess``."""

    id: int
    feed_id: int
    post_id: int
    raw: dict[str, Any] | None
    first_seen_at: datetime
    blocked: str | None


@dataclass(frozen=True, slots=True)
class Reprocessed:
    """A stored entry run through the content stage again."""

    entry_id: int
    post: fmt.Post
    blocked: str | None = None
    #: A new raw entry to store (a refetched page, a re-cut full text), or None.
    raw: dict[str, Any] | None = None


@dataclass(slots=True)
class ReprocessResult:
    """What re-running the content stage changed, and the files to write or remove."""

    updated: int = 0
    unchanged: int = 0
    blocked: int = 0
    unblocked: int = 0
    conflicts: list[str] = field(default_factory=list)
    changed_posts: list[StoredPost] = field(default_factory=list)
    removed_slugs: list[str] = field(default_factory=list)


class ReprocessMixin:
    """Reprocess's reads and writes, for :class:`aggregator.store.store.Store`."""

    _session: sessionmaker[Session]

    def count_entries(self, feed_ids: Iterable[int], *, since: datetime | None = None) -> int:
        query = select(func.count(m.Entry.id)).where(m.Entry.feed_id.in_(list(feed_ids)))
        if since is not None:
            query = query.join(m.Post, m.Post.id == m.Entry.post_id).where(m.Post.date >= since)
        with self._session() as session:
            return int(session.scalar(query) or 0)

    def iter_entries(
        self, feed_id: int, *, since: datetime | None = None, batch: int = 200
    ) -> Iterator[list[StoredEntry]]:
        """One feed's entries in batches (of posts dated ``since`` or later)."""
        last_id = 0
        while True:
            query = (
                select(m.Entry)
                .where(m.Entry.feed_id == feed_id, m.Entry.id > last_id)
                .order_by(m.Entry.id)
                .limit(batch)
            )
            if since is not None:
                query = query.join(m.Post, m.Post.id == m.Entry.post_id).where(m.Post.date >= since)
            with self._session() as session:
                rows = list(session.scalars(query))
            if not rows:
                return
            yield [
                StoredEntry(e.id, e.feed_id, e.post_id, e.raw, e.first_seen_at, e.blocked)
                for e in rows
            ]
            last_id = rows[-1].id

    def reprocess(self, updates: Sequence[Reprocessed], *, now: datetime) -> ReprocessResult:
        """Apply re-derived posts and filter verdicts to stored entries, in one transaction.

        A changed body or title replaces the post's content (the old one is
        kept as a revision, without an ``updated:`` date: the story did not
        change, our processing did); changed images, date or categories are
        updated in place.  A post whose new content equals *another* stored
        post is left as it was and reported in ``conflicts``: merging two
        posts is a decision for a person.
        """
        result = ReprocessResult()
        with self._session.begin() as session:
            for update_ in updates:
                entry = session.get(m.Entry, update_.entry_id)
                if entry is None:
                    continue  # deleted since it was read
                row = entry.post
                was_blocked = row.blocked is not None
                changed = _reapply(session, row, entry, update_.post, now, result)
                entry.blocked = update_.blocked
                if update_.raw is not None:
                    entry.raw = update_.raw
                refresh_blocked(session, row)
                if row.blocked is not None and not was_blocked:
                    result.blocked += 1
                elif row.blocked is None and was_blocked:
                    result.unblocked += 1
                elif changed:
                    result.updated += 1
                else:
                    result.unchanged += 1
                note_export(
                    result.changed_posts, result.removed_slugs, row, was_blocked, changed=changed
                )
        return result


def _reapply(
    session: Session,
    row: m.Post,
    entry: m.Entry,
    post: fmt.Post,
    now: datetime,
    result: ReprocessResult,
) -> bool:
    """Put a re-derived post on its row; whether anything changed."""
    digest = content_hash(post.title, post.body)
    if digest != row.content_hash:
        other = session.scalar(select(m.Post.id).where(m.Post.content_hash == digest))
        if other is not None:
            result.conflicts.append(
                f"entry {entry.id} ({entry.link or entry.key}): its new content is "
                f"already post {other}; post {row.id} was left as it was"
            )
            return False
        if (row.title, row.body) == (post.title, post.body):
            # Same title and body under a changed hash rule (text-less
            # bodies now hash their media): nothing to revise, and the
            # other fields are compared below.
            row.content_hash = digest
        else:
            revise(session, row, post, digest, now, link=row.link, edited=False)
            return True
    values = post_values(post)
    if any(getattr(row, name) != values[name] for name in _REDERIVED):
        for name in _REDERIVED:
            setattr(row, name, values[name])
        row.updated_at = now
        return True
    return False
