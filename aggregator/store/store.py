"""All reads and writes of posts, entries and feeds.

The only module that issues queries.  Every public method is one
transaction: either everything it was asked to write is committed, or nothing
is (ARCHITECTURE invariant 5).  Dedup decisions come from the pure rules in
:mod:`aggregator.policy.dedup`; this class only gathers the facts they need in a few
batched queries and applies the verdicts.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from sqlalchemy import (
    Engine,
    Table,
    bindparam,
    func,
    insert,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from aggregator.content.items import IngestItem
from aggregator.hexo import post as fmt
from aggregator.policy.dedup import (
    Identity,
    Known,
    Outcome,
    StoredIdentity,
    content_hash,
    decide,
    fallback_match,
    free_slug,
    slug_for,
)
from aggregator.store import models as m
from aggregator.store.bulk import NewRows
from aggregator.store.engine import check_schema, make_engine, upgrade
from aggregator.store.feeds import FeedsMixin, FeedState, FeedUpdate, check_fence

if TYPE_CHECKING:
    from aggregator.store.exports import ExportLedger

__all__ = [
    "FeedState",
    "IngestItem",
    "IngestJob",
    "IngestResult",
    "ReprocessResult",
    "Reprocessed",
    "Store",
    "StoredEntry",
    "StoredPost",
]

log = logging.getLogger(__name__)

_RETRIES_ON_CONFLICT = 3
# A replayed file's stem kept as its slug: one path component (no separators,
# no leading dot), no longer than the slug column.
_SAFE_SLUG = re.compile(r"(?=.{1,64}\Z)\w[\w.-]*")
_NONE: Final[list[int]] = []
_NO_POSTS: Final[frozenset[int]] = frozenset()


@dataclass(frozen=True, slots=True)
class StoredPost:
    """A post as stored: its export stem, its id and the post itself."""

    id: int
    slug: str
    post: fmt.Post
    revision: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class IngestJob:
    """The arguments of one :meth:`Store.ingest` call, for :meth:`Store.ingest_many`."""

    feed_id: int
    items: Sequence[IngestItem]
    now: datetime
    feed_update: FeedUpdate | None = None
    identity: Identity = "guid"


@dataclass(slots=True)
class IngestResult:
    """Counts of what one ingest did, and the files to write or remove.

    ``blocked`` counts new items a filter kept out (they are stored, and also
    not counted as new); ``removed_slugs`` are exported posts that an edit
    made blocked, whose files must go.
    """

    new: int = 0
    duplicate: int = 0
    updated: int = 0
    unchanged: int = 0
    blocked: int = 0
    changed_posts: list[StoredPost] = field(default_factory=list)
    removed_slugs: list[str] = field(default_factory=list)

    def count(self, outcome: Outcome) -> None:
        setattr(self, outcome.value, getattr(self, outcome.value) + 1)


def _to_post(row: m.Post) -> fmt.Post:
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


def _stored(row: m.Post) -> StoredPost:
    return StoredPost(
        id=row.id,
        slug=row.slug,
        post=_to_post(row),
        revision=row.revision,
        updated_at=row.updated_at,
    )


def _new_row(
    post: fmt.Post,
    digest: str,
    *,
    feed_id: int | None,
    link: str | None,
    slug: str | None = None,
) -> m.Post:
    return m.Post(
        slug=slug or slug_for(post.date, digest),
        content_hash=digest,
        title=post.title,
        group_name=post.group,
        outlet=post.outlet,
        section=post.section,
        headimg=post.headimg,
        thumbnail=post.thumbnail,
        author=post.author,
        comments=post.comments,
        date=post.date,
        body=post.body,
        link=link,
        feed_id=feed_id,
        revision=0,
        revised_at=post.updated,
        layout=post.layout.as_dict() if post.layout is not None else None,
    )


def _new_values(item: IngestItem, digest: str, *, feed_id: int) -> dict[str, Any]:
    """The columns of a new post's row, for a bulk INSERT (see ``_new_row``)."""
    post = item.post
    stamp = m.utcnow()
    return {
        "slug": slug_for(post.date, digest),
        "content_hash": digest,
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
        "link": item.link,
        "feed_id": feed_id,
        "revision": 0,
        "revised_at": post.updated,
        "layout": post.layout.as_dict() if post.layout is not None else None,
        "blocked": item.blocked,
        "created_at": stamp,
        "updated_at": stamp,
    }


def _refresh_blocked(session: Session, row: m.Post) -> None:
    """A post is blocked only when every entry of it is (see models.Post.blocked)."""
    session.flush()
    verdicts = list(session.scalars(select(m.Entry.blocked).where(m.Entry.post_id == row.id)))
    row.blocked = verdicts[0] if verdicts and all(verdicts) else None


# The reads of ``ingest``, built once: expanding bind parameters let
# SQLAlchemy cache their compiled form instead of coercing every value of
# every IN list into a literal on each call.
_ENTRIES_BY_KEY: Final = (
    select(m.Entry, m.Post)
    .join(m.Post, m.Post.id == m.Entry.post_id)
    .where(
        m.Entry.feed_id == bindparam("feed_id"), m.Entry.key.in_(bindparam("keys", expanding=True))
    )
)
_CANDIDATE_CONDITIONS: Final = (
    m.Entry.guid.in_(bindparam("guids", expanding=True)),
    m.Entry.link_key.in_(bindparam("links", expanding=True)),
)


def _candidates(*conditions: Any) -> Any:
    return (
        select(m.Entry, m.Post)
        .join(m.Post, m.Post.id == m.Entry.post_id)
        .where(m.Entry.feed_id == bindparam("feed_id"), or_(*conditions))
        .order_by(m.Entry.last_seen_at.desc(), m.Entry.id.desc())
    )


_CANDIDATES: Final = _candidates(*_CANDIDATE_CONDITIONS)
_CANDIDATES_BY_TITLE: Final = _candidates(
    *_CANDIDATE_CONDITIONS, m.Post.title.in_(bindparam("titles", expanding=True))
)
# Whether anything stored bears on new-looking items: a post with one of
# their hashes, a post that had one before an edit, a post with one of the
# slugs they would get.  On a cold pass nothing does, and this one query
# stands for the three that look closer.
_ANYTHING_KNOWN: Final = union_all(
    select(m.Post.__table__.c.id).where(
        m.Post.__table__.c.content_hash.in_(bindparam("digests", expanding=True))
    ),
    select(m.PostRevision.__table__.c.post_id).where(
        m.PostRevision.__table__.c.content_hash.in_(bindparam("digests", expanding=True))
    ),
    select(m.Post.__table__.c.id).where(
        m.Post.__table__.c.slug.in_(bindparam("slugs", expanding=True))
    ),
).limit(1)
_POSTS_BY_HASH: Final = select(m.Post).where(
    m.Post.content_hash.in_(bindparam("digests", expanding=True))
)
# Posts an earlier version of which had one of these hashes: a story that
# was edited since is found under its first content too.
_FORMER_HASHES: Final = (
    select(m.PostRevision.content_hash, m.PostRevision.post_id)
    .where(m.PostRevision.content_hash.in_(bindparam("digests", expanding=True)))
    .order_by(m.PostRevision.replaced_at.desc(), m.PostRevision.id.desc())
)
# The tables, typed as Core tables for insert()/update() (the ORM's
# ``__table__`` is declared as a FromClause).
_POSTS: Final = cast("Table", m.Post.__table__)
_ENTRIES: Final = cast("Table", m.Entry.__table__)
_FEEDS: Final = cast("Table", m.Feed.__table__)

_SLUGS_TAKEN: Final = select(m.Post.__table__.c.slug).where(
    m.Post.__table__.c.slug.in_(bindparam("slugs", expanding=True))
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


class Store(FeedsMixin):
    """The database behind one URL.  Thread-safe; one instance per process."""

    def __init__(self, engine: Engine, *, bulk_rows: bool = True) -> None:
        """``bulk_rows=False`` writes new posts and entries through SQLAlchemy
        Core instead of :mod:`aggregator.store.bulk` (the tests compare the two).

        The bulk path needs INSERT ... RETURNING (SQLite 3.35 or later); on an
        older SQLite library, Core's own fallback is used instead.
        """
        self.engine = engine
        self._session = sessionmaker(engine, expire_on_commit=False)
        self._new_rows = (
            NewRows(engine.dialect) if bulk_rows and engine.dialect.insert_returning else None
        )

    @classmethod
    def open(cls, url: str, *, schema: Literal["upgrade", "check", "as-is"] = "upgrade") -> Store:
        """Connect; ``schema`` says whether to migrate, to insist on the current schema, or neither.

        Commands that write (fetch, replay, run) upgrade; commands that only
        read (status, export) check, and refuse an empty or older database
        instead of changing it; ``db current`` takes the database as it is.
        """
        engine = make_engine(url)
        try:
            if schema == "upgrade":
                upgrade(engine)
            elif schema == "check":
                check_schema(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    @property
    def exports(self) -> ExportLedger:
        """Which posts' files are in which export directory (aggregator.store.exports)."""
        from aggregator.store.exports import ExportLedger

        return ExportLedger(self)

    def ping(self) -> None:
        """Raise if the database does not answer (used by /healthz)."""
        with self.engine.connect() as conn:
            conn.execute(select(1))

    # -- posts ------------------------------------------------------------

    def add_posts(
        self, posts: Sequence[fmt.Post], *, names: Sequence[str | None] | None = None
    ) -> list[Outcome]:
        """Store replayed posts once per content hash: NEW or DUPLICATE each.

        ``names`` are the file stems the posts were read from: a new post
        takes its stem as slug (so export writes it back under the same name)
        when the stem is a safe file name no other post uses.
        """
        for attempt in range(_RETRIES_ON_CONFLICT):
            try:
                return self._add_posts_once(posts, names or [None] * len(posts))
            except IntegrityError:
                # Another writer stored one of these hashes between our read
                # and our insert; the next round sees it as a duplicate.
                if attempt == _RETRIES_ON_CONFLICT - 1:
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
                session.add(_new_row(post, digest, feed_id=None, link=None, slug=slug))
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
                yield _stored(row)
            last_id = rows[-1].id

    def count_posts(self, *, outlet: str | None = None, since: datetime | None = None) -> int:
        query = select(func.count(m.Post.id)).where(m.Post.blocked.is_(None))
        if outlet is not None:
            query = query.where(m.Post.outlet == outlet)
        if since is not None:
            query = query.where(m.Post.date >= since)
        with self._session() as session:
            return int(session.scalar(query) or 0)

    # -- ingest of one fetched feed ----------------------------------------

    def ingest(
        self,
        feed_id: int,
        items: Sequence[IngestItem],
        *,
        now: datetime,
        feed_update: FeedUpdate | None = None,
        identity: Identity = "guid",
    ) -> IngestResult:
        """Store one fetched feed's entries and its new state in one transaction.

        ``feed_update`` (validators, status, next poll time, lease release)
        are written in the same transaction as the posts, so a crash can
        never record a feed as fetched without its posts, or the reverse.
        ``identity`` is the feed's setting, used to match items whose key is
        unknown (see :func:`aggregator.policy.dedup.fallback_match`).
        """
        for attempt in range(_RETRIES_ON_CONFLICT):
            try:
                return self._ingest_once(feed_id, items, now, feed_update, identity)
            except IntegrityError:
                if attempt == _RETRIES_ON_CONFLICT - 1:
                    raise
                log.debug("conflict while ingesting feed %s, retrying", feed_id, exc_info=True)
        raise AssertionError("unreachable")

    def ingest_many(self, jobs: Sequence[IngestJob]) -> list[IngestResult | Exception]:
        """Several feeds' :meth:`ingest` in one transaction, results in order.

        A pass stores hundreds of feeds one after another through SQLite's
        single writer; a transaction each rewrites the same index pages into
        the write-ahead log every time.  Feeds that are ready together are
        stored together, each still all-or-nothing (the batch is).

        One feed's failure stays with that feed: the place of a feed that
        could not be stored holds its exception instead of a result.  If the
        batch fails for any reason (another daemon stored the same entry
        first, a row the database refuses), it is rolled back and every feed
        is stored on its own, with :meth:`ingest`'s retries, so only the
        feed at fault fails.
        """
        if len(jobs) == 1:
            return [self._ingest_job(jobs[0])]
        try:
            with self._session.begin() as session:
                return [
                    self._ingest_into(
                        session, job.feed_id, job.items, job.now, job.feed_update, job.identity
                    )
                    for job in jobs
                ]
        except Exception as exc:
            log.debug(
                "batch of %d feeds failed (%s), storing them one by one",
                len(jobs),
                type(exc).__name__,
            )
            return [self._ingest_job(job) for job in jobs]

    def _ingest_job(self, job: IngestJob) -> IngestResult | Exception:
        """One feed's ingest, its failure returned rather than raised (see ``ingest_many``)."""
        try:
            return self.ingest(
                job.feed_id,
                job.items,
                now=job.now,
                feed_update=job.feed_update,
                identity=job.identity,
            )
        except Exception as exc:
            log.debug("feed %s could not be stored", job.feed_id, exc_info=True)
            return exc

    @staticmethod
    def _match_unknown(
        session: Session,
        feed_id: int,
        items: Sequence[IngestItem],
        unique: Mapping[str, IngestItem],
        entries: dict[str, m.Entry],
        entry_posts: dict[int, m.Post],
        identity: Identity,
    ) -> set[str]:
        """Find stored entries for items whose key is unknown, and re-key them.

        Keys change when a publisher re-issues a GUID with an edited headline,
        when the feed's ``identity`` setting changes, or when the canonical
        link rules learn a tracking parameter; without this, each of those
        would store every item again.  One query gathers the candidates; the
        decision is :func:`aggregator.policy.dedup.fallback_match`.  Returns the
        keys that were re-keyed.
        """
        rekeyed: set[str] = set()
        unknown = {key: item for key, item in unique.items() if key not in entries}
        if not unknown:
            return rekeyed
        guids = {it.guid.strip() for it in unknown.values() if it.guid and it.guid.strip()}
        links = {k for it in unknown.values() if (k := it.link_key) is not None}
        titles = {it.post.title for it in unknown.values() if it.post.title.strip()}
        query = _CANDIDATES_BY_TITLE if identity == "title" else _CANDIDATES
        params = {"feed_id": feed_id, "guids": list(guids), "links": list(links)}
        if identity == "title":
            params["titles"] = list(titles)
        rows = session.execute(query, params).all()
        if not rows:
            return rekeyed
        by_id = {entry.id: entry for entry, _ in rows}
        posts = {entry.id: post for entry, post in rows}
        candidates = [
            StoredIdentity(entry.id, entry.key, entry.guid, entry.link_key, post.title)
            for entry, post in rows
        ]
        link_counts: dict[str, int] = {}
        guid_counts: dict[str, int] = {}
        for item in items:
            if (k := item.canonical) is not None:
                link_counts[k] = link_counts.get(k, 0) + 1
            if item.guid and (g := item.guid.strip()):
                guid_counts[g] = guid_counts.get(g, 0) + 1
        batch_keys = set(unique)
        for key, item in unknown.items():
            found = fallback_match(
                guid=item.guid,
                link=item.link,
                title=item.post.title,
                identity=identity,
                candidates=candidates,
                batch_keys=batch_keys,
                batch_link_counts=link_counts,
                batch_guid_counts=guid_counts,
            )
            if found is None:
                continue
            # Claimed: no second item of this fetch may take the same entry.
            candidates = [c for c in candidates if c.entry_id != found.entry_id]
            entry = by_id[found.entry_id]
            log.debug("feed %s: entry %r is now %r", feed_id, entry.key, key)
            entry.key = key
            entries[key] = entry
            entry_posts[entry.post_id] = posts[entry.id]
            rekeyed.add(key)
        return rekeyed

    def _ingest_once(
        self,
        feed_id: int,
        items: Sequence[IngestItem],
        now: datetime,
        feed_update: FeedUpdate | None,
        identity: Identity,
    ) -> IngestResult:
        with self._session.begin() as session:
            return self._ingest_into(session, feed_id, items, now, feed_update, identity)

    def _ingest_into(  # noqa: C901 - split into facts/decide/apply in the store slice (issue 19)
        self,
        session: Session,
        feed_id: int,
        items: Sequence[IngestItem],
        now: datetime,
        feed_update: FeedUpdate | None,
        identity: Identity,
    ) -> IngestResult:
        """One feed's ingest inside the caller's transaction (see :meth:`ingest`)."""
        if feed_update is not None:
            check_fence(session, feed_id, feed_update.fence)  # LeaseLost: nothing is written
        result = IngestResult()
        # A feed may list one item twice (same key: the same identifier,
        # headline and content, see dedup.entry_keys); the first occurrence
        # wins and the others count as duplicates.
        unique: dict[str, IngestItem] = {}
        for item in items:
            if unique.setdefault(item.key, item) is not item:
                result.duplicate += 1
        digests = {key: it.digest for key, it in unique.items()}
        # The feed's entries under these keys, with their posts.
        entries: dict[str, m.Entry] = {}
        entry_posts: dict[int, m.Post] = {}
        entry: m.Entry | None
        for entry, entry_post in session.execute(
            _ENTRIES_BY_KEY, {"feed_id": feed_id, "keys": list(unique)}
        ):
            entries[entry.key] = entry
            entry_posts[entry_post.id] = entry_post
        rekeyed = self._match_unknown(
            session, feed_id, items, unique, entries, entry_posts, identity
        )
        # Posts that already have one of these hashes (hashes are unique:
        # an entry's own post is the one), or had one before an edit.  The
        # others are usually nowhere, so a plain (cheaper) query looks for
        # them first, and for the slugs new posts would take.
        by_hash = {p.content_hash: p for p in entry_posts.values()}
        unseen = {d for d in digests.values() if d not in by_hash}
        wanted = list(unseen)
        former: dict[str, list[int]] = {}
        check_slugs = False
        if wanted:
            slugs = list(
                {slug_for(it.post.date, it.digest) for it in unique.values() if it.digest in unseen}
            )
            connection = session.connection()
            check_slugs = (
                connection.execute(_ANYTHING_KNOWN, {"digests": wanted, "slugs": slugs}).first()
                is not None
            )
        if check_slugs:
            by_hash.update(
                (p.content_hash, p) for p in session.scalars(_POSTS_BY_HASH, {"digests": wanted})
            )
            for digest, post_id in session.connection().execute(
                _FORMER_HASHES, {"digests": wanted}
            ):
                former.setdefault(digest, []).append(post_id)
        # New posts are not added one by one through the ORM (a flush per
        # post): they wait in ``pending`` and go in with one multi-row
        # INSERT ... RETURNING, their entries with one executemany.
        # Anything that needs such a post's id (a later item of this batch
        # with the same content) inserts the pending ones first, so the
        # outcomes and the order of ``changed_posts`` are as if each post
        # had been written at once.
        pending: list[tuple[IngestItem, dict[str, Any]]] = []
        new_ids: dict[str, int] = {}

        def flush_pending() -> None:
            if not pending:
                return
            session.flush()
            connection = session.connection()
            if check_slugs:
                self._free_slugs(connection, [values for _, values in pending])
            if self._new_rows is not None:
                new_ids.update(
                    (digest, post_id)
                    for post_id, digest in self._new_rows.insert_posts(
                        connection, [values for _, values in pending]
                    )
                )
            else:
                returned = connection.execute(
                    insert(_POSTS).returning(
                        _POSTS.c.id, _POSTS.c.content_hash
                    ),
                    [values for _, values in pending],
                )
                new_ids.update((digest, post_id) for post_id, digest in returned)
            entry_rows = []
            for new_item, values in pending:
                post_id = new_ids[values["content_hash"]]
                entry_rows.append(self._entry_values(feed_id, new_item, post_id, now))
                if new_item.blocked is None:
                    result.changed_posts.append(
                        StoredPost(
                            id=post_id,
                            slug=values["slug"],
                            post=new_item.post,
                            revision=0,
                            updated_at=values["updated_at"],
                        )
                    )
            if self._new_rows is not None:
                self._new_rows.insert_entries(connection, entry_rows)
            else:
                connection.execute(insert(_ENTRIES), entry_rows)
            pending.clear()

        def owner_of(digest: str) -> m.Post | None:
            owner = by_hash.get(digest)
            if owner is None and digest in pending_digests:
                flush_pending()
            if owner is None and digest in new_ids:
                owner = session.get(m.Post, new_ids[digest])
                by_hash[digest] = owner  # type: ignore[assignment]
            return owner

        pending_digests: set[str] = set()
        shared = self._shared_keys(session, feed_id, entries, entry_posts, digests, rekeyed)
        for key, item in unique.items():
            digest = digests[key]
            entry = entries.get(key)
            current = entry_posts.get(entry.post_id) if entry is not None else None
            owner = owner_of(digest)
            earlier = former.get(digest, _NONE)
            outcome = decide(
                Known(
                    entry_post_id=entry.post_id if entry else None,
                    entry_post_hash=current.content_hash if current else None,
                    hash_post_id=owner.id if owner else None,
                    former_post_ids=frozenset(earlier) if earlier else _NO_POSTS,
                    same_content=current is not None
                    and current.content_hash != digest
                    and current.title == item.post.title
                    and current.body == item.post.body,
                    shared_key=key in shared,
                ),
                digest,
            )
            if owner is None and earlier and outcome is Outcome.DUPLICATE:
                # The story as it was before an edit: the edited post is it.
                owner = session.get(m.Post, earlier[0])
                by_hash[digest] = owner  # type: ignore[assignment]
            if (
                outcome is Outcome.UNCHANGED
                and current is not None
                and current.content_hash != digest
                and owner is None
                and not earlier
            ):
                # Same title and body under a new hash rule: take the new hash.
                current.content_hash = digest
                by_hash[digest] = current
            if outcome is Outcome.NEW and item.blocked is not None:
                result.blocked += 1
            else:
                result.count(outcome)
            if outcome is Outcome.NEW:
                if entry is not None:
                    # A new story on a key that named another: the old entry
                    # gives the key up (its post keeps it as a source).
                    entry.key = f"{entry.key}|entry:{entry.id}"
                pending.append((item, _new_values(item, digest, feed_id=feed_id)))
                pending_digests.add(digest)
                continue
            if outcome is Outcome.UPDATED:
                assert current is not None and entry is not None
                was_blocked = current.blocked is not None
                self._revise(session, current, item.post, digest, now, link=item.link)
                by_hash[digest] = current
                self._refresh_entry(entry, item, now)
                entry.blocked = item.blocked  # new content: judged by today's rules
                _refresh_blocked(session, current)
                self._note_export(result, current, was_blocked, changed=True)
            elif outcome is Outcome.DUPLICATE:
                assert owner is not None
                was_blocked = owner.blocked is not None
                if entry is None:
                    # Record the extra source of a story stored once.
                    session.add(self._entry_row(feed_id, item, owner.id, now))
                    # A story another feed blocked is exported if this one keeps it.
                    _refresh_blocked(session, owner)
                    self._note_export(result, owner, was_blocked, changed=False)
                else:
                    entry.last_seen_at = now
            else:
                assert entry is not None
                new_raw, old_raw = item.raw or {}, entry.raw or {}
                if (
                    key in rekeyed
                    or old_raw.get("format") != new_raw.get("format")
                    or ("page" in new_raw and "page" not in old_raw)
                ):
                    # Keep the latest guid/link, raw in today's format, and
                    # the article page once there is one (reprocess needs it).
                    self._refresh_entry(entry, item, now)
                entry.last_seen_at = now
        flush_pending()
        values = feed_update.values() if feed_update is not None else None
        if values:
            # Core, not an ORM-enabled UPDATE: no Feed is loaded in this
            # session to synchronise, and the ORM's bulk-update setup costs
            # as much as the statement (attribute and column names are the same).
            session.connection().execute(
                update(_FEEDS).where(_FEEDS.c.id == feed_id).values(**values, updated_at=now)
            )
        return result

    @staticmethod
    def _shared_keys(
        session: Session,
        feed_id: int,
        entries: Mapping[str, m.Entry],
        entry_posts: Mapping[int, m.Post],
        digests: Mapping[str, str],
        rekeyed: Collection[str],
    ) -> set[str]:
        """Keys of this fetch whose content changed under a GUID or link that
        other stories of the feed share too (see ``Known.shared_key``).

        A feed that once listed one story alone on its homepage link keyed it
        by that link; when later stories come on the same link, the next
        one listed alone has that key again, and is no edit of the first.
        Asked only when a stored entry's content changed, which is rare.
        """
        changed: dict[str, tuple[str, str]] = {}  # key -> (column, value)
        for key, entry in entries.items():
            post = entry_posts.get(entry.post_id)
            if key in rekeyed or key not in digests or post is None:
                continue
            if post.content_hash == digests[key]:
                continue
            if entry.guid and key == "guid:" + entry.guid.strip():
                changed[key] = ("guid", entry.guid)
            elif entry.link_key and key == "link:" + entry.link_key:
                changed[key] = ("link_key", entry.link_key)
        if not changed:
            return set()
        guids = [value for column, value in changed.values() if column == "guid"]
        links = [value for column, value in changed.values() if column == "link_key"]
        siblings = session.execute(
            select(m.Entry.id, m.Entry.post_id, m.Entry.guid, m.Entry.link_key).where(
                m.Entry.feed_id == feed_id,
                or_(m.Entry.guid.in_(guids), m.Entry.link_key.in_(links)),
            )
        ).all()
        found: set[str] = set()
        for key, (column, value) in changed.items():
            entry = entries[key]
            for sibling_id, post_id, guid, link_key in siblings:
                same = guid == value if column == "guid" else link_key == value
                if same and sibling_id != entry.id and post_id != entry.post_id:
                    found.add(key)
                    break
        return found

    @staticmethod
    def _note_export(
        result: IngestResult | ReprocessResult, row: m.Post, was_blocked: bool, *, changed: bool
    ) -> None:
        """Queue the post's file to be written, or removed when it became blocked."""
        if row.blocked is not None:
            if not was_blocked:
                result.removed_slugs.append(row.slug)
        elif changed or was_blocked:
            result.changed_posts.append(_stored(row))

    @staticmethod
    def _free_slugs(connection: Any, rows: Sequence[dict[str, Any]]) -> None:
        """Give each new post a slug no other has (see :func:`aggregator.policy.dedup.free_slug`).

        A slug is the date and a hash prefix, so two posts share one only
        when a hash was used before (an edited post keeps the slug of its
        first content) or two hashes share twelve hex digits; the new post
        then takes the next free variant instead of failing the feed.
        """
        wanted = list({row["slug"] for row in rows})
        taken = set(connection.execute(_SLUGS_TAKEN, {"slugs": wanted}).scalars())
        for row in rows:
            slug = row["slug"]
            if slug in taken:
                slug = row["slug"] = free_slug(slug, taken)
            taken.add(slug)

    @staticmethod
    def _refresh_entry(entry: m.Entry, item: IngestItem, now: datetime) -> None:
        entry.raw, entry.last_seen_at = item.raw, now
        entry.guid, entry.link, entry.link_key = item.guid, item.link, item.link_key
        entry.author = item.author

    @staticmethod
    def _entry_values(
        feed_id: int, item: IngestItem, post_id: int, now: datetime
    ) -> dict[str, Any]:
        return {
            "feed_id": feed_id,
            "key": item.key,
            "guid": item.guid,
            "link": item.link,
            "link_key": item.link_key,
            "author": item.author,
            "blocked": item.blocked,
            "post_id": post_id,
            "raw": item.raw,
            "first_seen_at": now,
            "last_seen_at": now,
        }

    @classmethod
    def _entry_row(cls, feed_id: int, item: IngestItem, post_id: int, now: datetime) -> m.Entry:
        return m.Entry(**cls._entry_values(feed_id, item, post_id, now))

    @staticmethod
    def _revise(
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
        row.title, row.body, row.date = post.title, post.body, post.date
        row.headimg, row.thumbnail = post.headimg, post.thumbnail
        row.group_name, row.outlet, row.section = post.group, post.outlet, post.section
        row.author, row.link = post.author, link
        row.revision += 1
        row.updated_at = now
        if edited:
            row.revised_at = now

    # -- reprocess -----------------------------------------------------------

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
                changed = self._reapply(session, row, entry, update_.post, now, result)
                entry.blocked = update_.blocked
                if update_.raw is not None:
                    entry.raw = update_.raw
                _refresh_blocked(session, row)
                if row.blocked is not None and not was_blocked:
                    result.blocked += 1
                elif row.blocked is None and was_blocked:
                    result.unblocked += 1
                elif changed:
                    result.updated += 1
                else:
                    result.unchanged += 1
                self._note_export(result, row, was_blocked, changed=changed)
        return result

    def _reapply(
        self,
        session: Session,
        row: m.Post,
        entry: m.Entry,
        post: fmt.Post,
        now: datetime,
        result: ReprocessResult,
    ) -> bool:
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
                self._revise(session, row, post, digest, now, link=row.link, edited=False)
                return True
        if (
            row.body != post.body
            or row.title != post.title
            or (row.headimg, row.thumbnail, row.date) != (post.headimg, post.thumbnail, post.date)
            or (row.group_name, row.outlet, row.section) != post.categories
        ):
            row.title, row.body, row.date = post.title, post.body, post.date
            row.headimg, row.thumbnail = post.headimg, post.thumbnail
            row.group_name, row.outlet, row.section = post.categories
            row.updated_at = now
            return True
        return False
