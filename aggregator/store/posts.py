"""Posts: the one mapping between a :class:`~aggregator.hexo.post.Post` and its row.

:func:`post_values` (Post -> columns) and :func:`post_of` (columns -> Post)
are the only places that know which field is which column; a new post's
row (:func:`new_post_values`) is built from them and goes into the database
through the ORM (replay, :meth:`PostsMixin.add_posts`) or through
:mod:`aggregator.store.bulk` (ingest) alike, and every read gives back a
:class:`StoredPost` through :func:`stored_post`.  The helpers below the
mapping are the post writes that ingest and reprocess share.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from aggregator.hexo import post as fmt
from aggregator.policy.dedup import Outcome, content_hash, slug_for
from aggregator.store import models as m

__all__ = [
    "PostsMixin",
    "StoredPost",
    "new_post_values",
    "note_export",
    "post_of",
    "post_values",
    "refresh_blocked",
    "revise",
    "stored_post",
]

log = logging.getLogger(__name__)

#: How often a write that lost a race with another writer is tried again.
RETRIES_ON_CONFLICT: Final = 3
# A replayed file's stem kept as its slug: one path component (no separators,
# no leading dot), no longer than the slug column.
_SAFE_SLUG = re.compile(r"(?=.{1,64}\Z)\w[\w.-]*")


@dataclass(frozen=True, slots=True)
class StoredPost:
    """A post as stored: its export stem, its id and the post itself."""

    id: int
    slug: str
    post: fmt.Post
    revision: int
    updated_at: datetime


# -- the mapping ---------------------------------------------------------------


def post_values(post: fmt.Post) -> dict[str, Any]:
    """A post's own columns (the rest of a row is bookkeeping: slug, hash, feed, times)."""
    return {
        "title": post.title,
        "group_name": post.group,
        "outlet": post.outlet,
        "section": post.section,
        "headimg": post.headimg,
        "thumbnail": post.thumbnail,
        "author": post.author,
        "comments": post.comments,
        "date": post.date,
        "body": post.body,
        "revised_at": post.updated,
        "layout": post.layout.as_dict() if post.layout is not None else None,
    }


def post_of(row: m.Post) -> fmt.Post:
    """The post a row holds: :func:`post_values` read backwards."""
    return fmt.Post(
        title=row.title,
        group=row.group_name,
        outlet=row.outlet,
        section=row.section,
        headimg=row.headimg,
        thumbnail=row.thumbnail,
        author=row.author,
        comments=row.comments,
        date=row.date,
        body=row.body,
        updated=row.revised_at,
        layout=fmt.Layout.from_dict(row.layout) if row.layout else None,
    )


def stored_post(row: m.Post) -> StoredPost:
    return StoredPost(
        id=row.id,
        slug=row.slug,
        post=post_of(row),
        revision=row.revision,
        updated_at=row.updated_at,
    )


def new_post_values(
    post: fmt.Post,
    digest: str,
    *,
    feed_id: int | None,
    link: str | None,
    slug: str | None = None,
    blocked: str | None = None,
) -> dict[str, Any]:
    """Every column of a new post's row but its id (tests/test_store.py checks "every")."""
    stamp = m.utcnow()
    return {
        "slug": slug or slug_for(post.date, digest),
        "content_hash": digest,
        **post_values(post),
        "link": link,
        "feed_id": feed_id,
        "revision": 0,
        "blocked": blocked,
        "created_at": stamp,
        "updated_at": stamp,
    }


#: The columns an edit replaces (:func:`revise`): what a feed says about the
#: story.  ``comments`` and ``layout`` stay as the post was first stored, and
#: ``revised_at`` is the edit's time, not the item's.
_REVISED: Final = (
    "title",
    "body",
    "date",
    "headimg",
    "thumbnail",
    "group_name",
    "outlet",
    "section",
    "author",
)


# -- post writes shared by ingest and reprocess ----------------------------------


def revise(
    session: Session,
    row: m.Post,
    post: fmt.Post,
    digest: str,
    now: datetime,
    *,
    link: str | None,
    edited: bool = True,
) -> None:
    """Replace a post's content, keeping the old one as a revision.

    ``edited`` is a publisher's edit: the post gains (or moves) its
    ``updated:`` date.  A re-run of our own clean-up (reprocess) keeps
    the old content too, but is not an edit of the story.
    """
    session.add(
        m.PostRevision(
            post_id=row.id,
            revision=row.revision,
            content_hash=row.content_hash,
            title=row.title,
            body=row.body,
            date=row.date,
            headimg=row.headimg,
            replaced_at=now,
        )
    )
    row.content_hash = digest
    values = post_values(post)
    for name in _REVISED:
        setattr(row, name, values[name])
    row.link = link
    row.revision += 1
    row.updated_at = now
    if edited:
        row.revised_at = now


def refresh_blocked(session: Session, row: m.Post) -> None:
    """A post is blocked only when every entry of it is (see models.Post.blocked)."""
    session.flush()
    verdicts = list(session.scalars(select(m.Entry.blocked).where(m.Entry.post_id == row.id)))
    row.blocked = verdicts[0] if verdicts and all(verdicts) else None


def note_export(
    changed_posts: list[StoredPost],
    removed_slugs: list[str],
    row: m.Post,
    was_blocked: bool,
    *,
    changed: bool,
) -> None:
    """Queue the post's file to be written, or removed when it became blocked."""
    if row.blocked is not None:
        if not was_blocked:
            removed_slugs.append(row.slug)
    elif changed or was_blocked:
        changed_posts.append(stored_post(row))


# -- queries -------------------------------------------------------------------


class PostsMixin:
    """Posts in (replay) and out (export), for :class:`aggregator.store.store.Store`."""

    _session: sessionmaker[Session]

    def add_posts(
        self, posts: Sequence[fmt.Post], *, names: Sequence[str | None] | None = None
    ) -> list[Outcome]:
        """Store replayed posts once per content hash: NEW or DUPLICATE each.

        ``names`` are the file stems the posts were read from: a new post
        takes its stem as slug (so export writes it back under the same name)
        when the stem is a safe file name no other post uses.
        """
        for attempt in range(RETRIES_ON_CONFLICT):
            try:
                return self._add_posts_once(posts, names or [None] * len(posts))
            except IntegrityError:
                # Another writer stored one of these hashes between our read
                # and our insert; the next round sees it as a duplicate.
                if attempt == RETRIES_ON_CONFLICT - 1:
                    raise
                log.debug("conflict while adding posts, retrying", exc_info=True)
        raise AssertionError("unreachable")

    def _add_posts_once(
        self, posts: Sequence[fmt.Post], names: Sequence[str | None]
    ) -> list[Outcome]:
        digests = [content_hash(p.title, p.body) for p in posts]
        wanted = {n for n in names if n is not None and _SAFE_SLUG.fullmatch(n)}
        with self._session.begin() as session:
            known = set(
                session.scalars(
                    select(m.Post.content_hash).where(m.Post.content_hash.in_(set(digests)))
                )
            )
            taken = set(session.scalars(select(m.Post.slug).where(m.Post.slug.in_(wanted))))
            outcomes: list[Outcome] = []
            for post, digest, name in zip(posts, digests, names, strict=True):
                if digest in known:
                    outcomes.append(Outcome.DUPLICATE)
                    continue
                known.add(digest)
                slug = name if name in wanted and name not in taken else None
                if slug is not None:
                    taken.add(slug)
                session.add(
                    m.Post(**new_post_values(post, digest, feed_id=None, link=None, slug=slug))
                )
                outcomes.append(Outcome.NEW)
        return outcomes

    def iter_posts(
        self, *, outlet: str | None = None, since: datetime | None = None, batch: int = 500
    ) -> Iterator[StoredPost]:
        """Exportable posts (not blocked) in insertion order, read in batches."""
        last_id = 0
        while True:
            query = (
                select(m.Post)
                .where(m.Post.id > last_id, m.Post.blocked.is_(None))
                .order_by(m.Post.id)
                .limit(batch)
            )
            if outlet is not None:
                query = query.where(m.Post.outlet == outlet)
            if since is not None:
                query = query.where(m.Post.date >= since)
            with self._session() as session:
                rows = list(session.scalars(query))
            if not rows:
                return
            for row in rows:
                yield stored_post(row)
            last_id = rows[-1].id

    def count_posts(self, *, outlet: str | None = None, since: datetime | None = None) -> int:
        query = select(func.count(m.Post.id)).where(m.Post.blocked.is_(None))
        if outlet is not None:
            query = query.where(m.Post.outlet == outlet)
        if since is not None:
            query = query.where(m.Post.date >= since)
        with self._session() as session:
            return int(session.scalar(query) or 0)
