"""Ingest: one fetched feed's items into posts and entries, in one transaction.

Every ingest runs in three steps, so the decisions can be read -- and
tested -- apart from the queries:

1. **gather** (:meth:`IngestMixin._gather`): a few batched queries find what
   the database knows that bears on these items -- the feed's entries under
   their keys (or, for keys it does not know, the entry they were stored
   under before, :meth:`IngestMixin._match_unknown`), posts with their
   content hashes now or before an edit -- as :class:`Facts`, plain values;
2. **decide** (:func:`plan`): a pure function over the items and the facts
   gives each item its :class:`Verdict` -- new, duplicate, updated or
   unchanged (the rules are :func:`aggregator.policy.dedup.decide`) and what
   that means for the rows -- walking the items in feed order, as a later
   item may be the duplicate of a post an earlier one made;
3. **apply** (:meth:`IngestMixin._apply`): the writes the verdicts call for.
   New posts go in together (:class:`_NewPosts`, through
   :mod:`aggregator.store.bulk`), and the feed's own row (its
   :class:`~aggregator.store.feeds.FeedUpdate`) in the same transaction
   (ARCHITECTURE invariant 5).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, cast

from sqlalchemy import Table, bindparam, or_, select, union_all, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from aggregator.policy.dedup import (
    Identity,
    Known,
    Outcome,
    StoredIdentity,
    decide,
    fallback_match,
    free_slug,
    slug_for,
)
from aggregator.store import models as m
from aggregator.store.bulk import JSONText
from aggregator.store.feeds import FeedUpdate, check_fence
from aggregator.store.posts import (
    RETRIES_ON_CONFLICT,
    StoredPost,
    new_post_values,
    note_export,
    refresh_blocked,
    revise,
)
from aggregator.store.records import IngestItem

if TYPE_CHECKING:
    from aggregator.store.bulk import NewRows

__all__ = [
    "Facts",
    "IngestJob",
    "IngestMixin",
    "IngestResult",
    "Verdict",
    "entry_values",
    "plan",
]

log = logging.getLogger(__name__)

_NO_POSTS: Final[frozenset[int]] = frozenset()


@dataclass(frozen=True, slots=True)
class IngestJob:
    """The arguments of one :meth:`IngestMixin.ingest` call, for ``ingest_many``."""

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


# -- the entry row -------------------------------------------------------------


def entry_values(
    feed_id: int, item: IngestItem, post_id: int, now: datetime, *, raw: Any = None
) -> dict[str, Any]:
    """Every column of a new entry's row but its id (``raw``: the column's value
    in place of ``item.raw``, such as the :class:`~aggregator.store.bulk.JSONText`
    of it)."""
    return {
        "feed_id": feed_id,
        "key": item.key,
        "guid": item.guid,
        "link": item.link,
        "link_key": item.link_key,
        "author": item.author,
        "blocked": item.blocked,
        "post_id": post_id,
        "raw": item.raw if raw is None else raw,
        "first_seen_at": now,
        "last_seen_at": now,
    }


def _refresh_entry(entry: m.Entry, item: IngestItem, now: datetime) -> None:
    """An entry seen again takes the item's identifiers, author and raw form."""
    entry.raw, entry.last_seen_at = item.raw, now
    entry.guid, entry.link, entry.link_key = item.guid, item.link, item.link_key
    entry.author = item.author


# -- 2. decide: pure -----------------------------------------------------------


@dataclass(slots=True)
class Facts:
    """What the database knows that bears on one fetch, as plain values.

    Post ids are the rows'; :func:`plan` names a post this fetch creates by
    a negative number instead (-1 the first), since it has no id yet.
    """

    #: key -> the post of the feed's stored entry under that key.
    entry_post: dict[str, int] = field(default_factory=dict)
    #: key -> that entry's raw form as stored (to see whether it is out of date).
    entry_raw: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    #: post id -> (content hash, title, body), for the posts of those entries.
    content: dict[int, tuple[str, str, str]] = field(default_factory=dict)
    #: content hash -> the stored post that has it.
    by_hash: dict[str, int] = field(default_factory=dict)
    #: content hash -> posts that had it before an edit, latest first.
    former: dict[str, list[int]] = field(default_factory=dict)
    #: Keys just found under another key (their entry is re-keyed).
    rekeyed: set[str] = field(default_factory=set)
    #: Keys whose content changed under a GUID or link other stories share.
    shared: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What storing one item does: its outcome, and the row changes that go with it."""

    key: str
    outcome: Outcome
    #: DUPLICATE: the post the item is (negative: a post this fetch creates).
    owner: int | None = None
    #: A post this fetch creates has the item's content: write the new posts
    #: so far before this item (so its id is known, and the order of
    #: ``changed_posts`` is as if each post were written at once).
    write_new_first: bool = False
    #: UNCHANGED under a new hash rule (same title and body): the post takes the new hash.
    rehash: bool = False
    #: NEW over a stored entry with the same key (another story on a key that
    #: named an earlier one): that entry gives the key up.
    release_key: bool = False
    #: UNCHANGED: refresh the stored entry (re-keyed, or its raw form out of date).
    refresh_entry: bool = False


def plan(items: Mapping[str, IngestItem], facts: Facts) -> list[Verdict]:
    """Each item's verdict, in order: no I/O, only the items and the facts.

    An item's verdict depends on those before it -- an edit moves a post to
    a new hash, a new post takes a hash -- so the walk keeps its own copy of
    which post has which hash and content.
    """
    content = dict(facts.content)
    by_hash = dict(facts.by_hash)
    created: dict[str, int] = {}  # hash -> a post of this fetch (negative)
    verdicts: list[Verdict] = []
    for key, item in items.items():
        digest = item.digest
        post_id = facts.entry_post.get(key)
        current = content[post_id] if post_id is not None else None
        owner = by_hash.get(digest)
        write_first = False
        if owner is None and digest in created:
            owner = by_hash[digest] = created[digest]
            write_first = True
        earlier = facts.former.get(digest)
        outcome = decide(
            Known(
                entry_post_id=post_id,
                entry_post_hash=current[0] if current is not None else None,
                hash_post_id=owner,
                former_post_ids=frozenset(earlier) if earlier else _NO_POSTS,
                same_content=current is not None
                and current[0] != digest
                and current[1] == item.post.title
                and current[2] == item.post.body,
                shared_key=key in facts.shared,
            ),
            digest,
        )
        if outcome is Outcome.DUPLICATE:
            if owner is None:
                # The story as it was before an edit: the edited post is it.
                assert earlier
                owner = by_hash[digest] = earlier[0]
            verdicts.append(Verdict(key, outcome, owner=owner, write_new_first=write_first))
        elif outcome is Outcome.NEW:
            created[digest] = -1 - len(created)
            verdicts.append(
                Verdict(key, outcome, write_new_first=write_first, release_key=post_id is not None)
            )
        elif outcome is Outcome.UPDATED:
            assert post_id is not None
            content[post_id] = (digest, item.post.title, item.post.body)
            by_hash[digest] = post_id
            verdicts.append(Verdict(key, outcome, write_new_first=write_first))
        else:
            assert post_id is not None and current is not None
            rehash = current[0] != digest and owner is None and not earlier
            if rehash:
                # Same title and body under a new hash rule: take the new hash.
                content[post_id] = (digest, current[1], current[2])
                by_hash[digest] = post_id
            verdicts.append(
                Verdict(
                    key,
                    outcome,
                    write_new_first=write_first,
                    rehash=rehash,
                    refresh_entry=key in facts.rekeyed
                    or _raw_out_of_date(facts.entry_raw.get(key), item.raw),
                )
            )
    return verdicts


def _raw_out_of_date(stored: dict[str, Any] | None, fetched: dict[str, Any] | None) -> bool:
    """Keep raw entries in today's format, and the article page once there is one
    (reprocess needs it)."""
    old, new = stored or {}, fetched or {}
    return old.get("format") != new.get("format") or ("page" in new and "page" not in old)


# -- 1. gather: the queries ----------------------------------------------------

# Built once: expanding bind parameters let SQLAlchemy cache their compiled
# form instead of coercing every value of every IN list into a literal on
# each call.
_ENTRIES_BY_KEY: Final = (
    select(m.Entry, m.Post)
    .join(m.Post, m.Post.id == m.Entry.post_id)
    .where(
        m.Entry.feed_id == bindparam("feed_id"), m.Entry.key.in_(bindparam("keys", expanding=True))
    )
)
_ENTRIES: Final = cast("Table", m.Entry.__table__)
_FEED_HAS_ENTRIES: Final = (
    select(_ENTRIES.c.id).where(_ENTRIES.c.feed_id == bindparam("feed_id")).limit(1)
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
_SLUGS_TAKEN: Final = select(m.Post.__table__.c.slug).where(
    m.Post.__table__.c.slug.in_(bindparam("slugs", expanding=True))
)
# The feeds table, typed as a Core table for update() (the ORM's
# ``__table__`` is declared as a FromClause).
_FEEDS: Final = cast("Table", m.Feed.__table__)
#: A feed's row by id, the columns set named by the parameters' keys (as
#: ``_UPDATE_FEED`` of aggregator.store.feeds, which Store.finish_polls runs).
_UPDATE_FEED: Final = update(_FEEDS).where(_FEEDS.c.id == bindparam("b_id"))


@dataclass(slots=True)
class _Rows:
    """The rows gathered for one fetch, which the apply step changes."""

    entries: dict[str, m.Entry]  # key -> the feed's stored entry
    #: id -> the posts gathered (those entries', those with the items' hashes);
    #: held here so the session's identity map keeps them (it holds them weakly).
    posts: dict[int, m.Post]
    rekeys: list[tuple[str, m.Entry]]  # entries found under another key, and their new key
    #: Whether a new post's slug may be taken (else the slug check is skipped).
    check_slugs: bool


class IngestMixin:
    """Ingest's queries and writes, for :class:`aggregator.store.store.Store`."""

    _session: sessionmaker[Session]
    _new_rows: NewRows

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
        is written in the same transaction as the posts, so a crash can
        never record a feed as fetched without its posts, or the reverse.
        ``identity`` is the feed's setting, used to match items whose key is
        unknown (see :func:`aggregator.policy.dedup.fallback_match`).
        """
        for attempt in range(RETRIES_ON_CONFLICT):
            try:
                with self._session.begin() as session:
                    return self._ingest_into(session, feed_id, items, now, feed_update, identity)
            except IntegrityError:
                if attempt == RETRIES_ON_CONFLICT - 1:
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

    def _ingest_into(
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
        facts, rows = self._gather(session, feed_id, items, unique, identity)
        self._apply(session, feed_id, unique, plan(unique, facts), rows, now, result)
        values = feed_update.values() if feed_update is not None else None
        if values:
            # Core, not an ORM-enabled UPDATE: no Feed is loaded in this
            # session to synchronise, and the ORM's bulk-update setup costs
            # as much as the statement (attribute and column names are the same).
            # The one prebuilt statement, its SET columns named by the
            # parameters' keys (as Store.finish_polls writes rows): building
            # ``update().values()`` per feed and its cache key cost more than
            # running it, 15% of a cold pass's ingest.
            session.connection().execute(
                _UPDATE_FEED, {**values, "updated_at": now, "b_id": feed_id}
            )
        return result

    # -- 1. gather -------------------------------------------------------------

    def _gather(
        self,
        session: Session,
        feed_id: int,
        items: Sequence[IngestItem],
        unique: Mapping[str, IngestItem],
        identity: Identity,
    ) -> tuple[Facts, _Rows]:
        """What the database knows about these items: as facts, and as rows to change."""
        facts = Facts()
        entries: dict[str, m.Entry] = {}
        posts: dict[int, m.Post] = {}
        rekeys: list[tuple[str, m.Entry]] = []
        # A feed with no entries stored (its first fetch: all of a cold pass)
        # has none under these keys nor any to match: one cheap Core query
        # stands for the two ORM queries that would find nothing.
        if session.connection().execute(_FEED_HAS_ENTRIES, {"feed_id": feed_id}).first():
            for entry, post in session.execute(
                _ENTRIES_BY_KEY, {"feed_id": feed_id, "keys": list(unique)}
            ):
                entries[entry.key] = entry
                posts[post.id] = post
            rekeys = self._match_unknown(session, feed_id, items, unique, entries, posts, identity)
        facts.rekeyed = {key for key, _ in rekeys}
        for key, entry in entries.items():
            post = posts[entry.post_id]
            facts.entry_post[key] = post.id
            facts.entry_raw[key] = entry.raw
            facts.content[post.id] = (post.content_hash, post.title, post.body)
        # Posts that already have one of these hashes (hashes are unique:
        # an entry's own post is the one), or had one before an edit.  The
        # others are usually nowhere, so a plain (cheaper) query looks for
        # them first, and for the slugs new posts would take.
        facts.by_hash = {p.content_hash: p.id for p in posts.values()}
        unseen = {it.digest for it in unique.values() if it.digest not in facts.by_hash}
        check_slugs = False
        if unseen:
            wanted = list(unseen)
            slugs = list(
                {slug_for(it.post.date, it.digest) for it in unique.values() if it.digest in unseen}
            )
            connection = session.connection()
            check_slugs = (
                connection.execute(_ANYTHING_KNOWN, {"digests": wanted, "slugs": slugs}).first()
                is not None
            )
            if check_slugs:
                for post in session.scalars(_POSTS_BY_HASH, {"digests": wanted}):
                    facts.by_hash[post.content_hash] = post.id
                    posts.setdefault(post.id, post)
                for digest, post_id in connection.execute(_FORMER_HASHES, {"digests": wanted}):
                    facts.former.setdefault(digest, []).append(post_id)
        facts.shared = self._shared_keys(session, feed_id, entries, posts, unique, facts.rekeyed)
        return facts, _Rows(entries, posts, rekeys, check_slugs)

    @staticmethod
    def _match_unknown(
        session: Session,
        feed_id: int,
        items: Sequence[IngestItem],
        unique: Mapping[str, IngestItem],
        entries: dict[str, m.Entry],
        posts: dict[int, m.Post],
        identity: Identity,
    ) -> list[tuple[str, m.Entry]]:
        """Find stored entries for items whose key is unknown; (new key, entry) pairs.

        Keys change when a publisher re-issues a GUID with an edited headline,
        when the feed's ``identity`` setting changes, or when the canonical
        link rules learn a tracking parameter; without this, each of those
        would store every item again.  One query gathers the candidates; the
        decision is :func:`aggregator.policy.dedup.fallback_match`.  The
        entries found join ``entries`` (under their new key) and their posts
        ``posts``; the apply step re-keys them.
        """
        rekeys: list[tuple[str, m.Entry]] = []
        unknown = {key: item for key, item in unique.items() if key not in entries}
        if not unknown:
            return rekeys
        guids = {it.guid.strip() for it in unknown.values() if it.guid and it.guid.strip()}
        links = {k for it in unknown.values() if (k := it.link_key) is not None}
        titles = {it.post.title for it in unknown.values() if it.post.title.strip()}
        query = _CANDIDATES_BY_TITLE if identity == "title" else _CANDIDATES
        params = {"feed_id": feed_id, "guids": list(guids), "links": list(links)}
        if identity == "title":
            params["titles"] = list(titles)
        rows = session.execute(query, params).all()
        if not rows:
            return rekeys
        by_id = {entry.id: entry for entry, _ in rows}
        found_posts = {entry.id: post for entry, post in rows}
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
            entries[key] = entry
            posts[entry.post_id] = found_posts[entry.id]
            rekeys.append((key, entry))
        return rekeys

    @staticmethod
    def _shared_keys(
        session: Session,
        feed_id: int,
        entries: Mapping[str, m.Entry],
        posts: Mapping[int, m.Post],
        unique: Mapping[str, IngestItem],
        rekeyed: set[str],
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
            post = posts.get(entry.post_id)
            item = unique.get(key)
            if key in rekeyed or item is None or post is None:
                continue
            if post.content_hash == item.digest:
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

    # -- 3. apply --------------------------------------------------------------

    def _apply(
        self,
        session: Session,
        feed_id: int,
        unique: Mapping[str, IngestItem],
        verdicts: Sequence[Verdict],
        rows: _Rows,
        now: datetime,
        result: IngestResult,
    ) -> None:
        """Write what the verdicts say, counting each outcome into ``result``."""
        for key, matched in rows.rekeys:
            log.debug("feed %s: entry %r is now %r", feed_id, matched.key, key)
            matched.key = key
        created = _NewPosts(self._new_rows, feed_id, now, check_slugs=rows.check_slugs)
        for verdict in verdicts:
            item = unique[verdict.key]
            entry = rows.entries.get(verdict.key)
            if verdict.write_new_first:
                created.write(session, result)
            outcome = verdict.outcome
            if outcome is Outcome.NEW and item.blocked is not None:
                result.blocked += 1
            else:
                result.count(outcome)
            if outcome is Outcome.NEW:
                if verdict.release_key:
                    assert entry is not None
                    # A new story on a key that named another: the old entry
                    # gives the key up (its post keeps it as a source).
                    entry.key = f"{entry.key}|entry:{entry.id}"
                created.add(item)
            elif outcome is Outcome.UPDATED:
                assert entry is not None
                current = rows.posts[entry.post_id]
                was_blocked = current.blocked is not None
                revise(session, current, item.post, item.digest, now, link=item.link)
                _refresh_entry(entry, item, now)
                entry.blocked = item.blocked  # new content: judged by today's rules
                refresh_blocked(session, current)
                note_export(
                    result.changed_posts, result.removed_slugs, current, was_blocked, changed=True
                )
            elif outcome is Outcome.DUPLICATE:
                if entry is not None:
                    entry.last_seen_at = now
                    continue
                assert verdict.owner is not None
                owner_id = verdict.owner if verdict.owner > 0 else created.ids[item.digest]
                owner = rows.posts.get(owner_id) or session.get(m.Post, owner_id)
                assert owner is not None
                rows.posts[owner_id] = owner
                was_blocked = owner.blocked is not None
                # Record the extra source of a story stored once.
                session.add(m.Entry(**entry_values(feed_id, item, owner.id, now)))
                # A story another feed blocked is exported if this one keeps it.
                refresh_blocked(session, owner)
                note_export(
                    result.changed_posts, result.removed_slugs, owner, was_blocked, changed=False
                )
            else:
                assert entry is not None
                if verdict.rehash:
                    rows.posts[entry.post_id].content_hash = item.digest
                if verdict.refresh_entry:
                    _refresh_entry(entry, item, now)
                entry.last_seen_at = now
        created.write(session, result)


class _NewPosts:
    """New posts waiting to be written together, and the ids of those written.

    Adding them one by one through the ORM costs a flush each; instead they
    wait here and go in with one multi-row INSERT ... RETURNING, their
    entries with one executemany (:class:`aggregator.store.bulk.NewRows`).
    """

    def __init__(self, rows: NewRows, feed_id: int, now: datetime, *, check_slugs: bool) -> None:
        self._rows = rows
        self._feed_id = feed_id
        self._now = now
        self._check_slugs = check_slugs
        self._pending: list[tuple[IngestItem, dict[str, Any]]] = []
        #: content hash -> id, of the posts written so far.
        self.ids: dict[str, int] = {}

    def add(self, item: IngestItem) -> None:
        values = new_post_values(
            item.post, item.digest, feed_id=self._feed_id, link=item.link, blocked=item.blocked
        )
        self._pending.append((item, values))

    def write(self, session: Session, result: IngestResult) -> None:
        """Insert the pending posts and their entries; unblocked ones join ``changed_posts``."""
        if not self._pending:
            return
        session.flush()  # entries that gave up a key first: a new one takes it
        connection = session.connection()
        post_rows = [values for _, values in self._pending]
        if self._check_slugs:
            _free_slugs(connection, post_rows)
        self.ids.update(
            (digest, post_id) for post_id, digest in self._rows.insert_posts(connection, post_rows)
        )
        entry_rows = []
        as_text = self._rows.takes_json_text
        for item, values in self._pending:
            post_id = self.ids[values["content_hash"]]
            text = item.raw_text if as_text else None
            raw = JSONText(text) if text is not None else None
            entry_rows.append(entry_values(self._feed_id, item, post_id, self._now, raw=raw))
            if item.blocked is None:
                result.changed_posts.append(
                    StoredPost(
                        id=post_id,
                        slug=values["slug"],
                        post=item.post,
                        revision=0,
                        updated_at=values["updated_at"],
                    )
                )
        self._rows.insert_entries(connection, entry_rows)
        self._pending.clear()


def _free_slugs(connection: Connection, rows: Sequence[dict[str, Any]]) -> None:
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
