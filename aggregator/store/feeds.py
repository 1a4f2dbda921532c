"""Feed rows: feeds.yaml into the table, the leases, and what a poll records.

The feeds table is where the schedule survives a restart (ARCHITECTURE
invariant 4) and where several daemons on one database take turns (a lease
per feed, invariant 6).  A poll's outcome comes in as a :class:`FeedUpdate`,
a typed record of the columns a poll may change, so a misspelt column is a
type error, not a failed UPDATE at run time.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from sqlalchemy import (
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from aggregator.errors import AggregatorError
from aggregator.policy.fleet import Candidate, HostBudget, host_of, plan_claims
from aggregator.policy.politeness import HostPolicy
from aggregator.policy.schedule import startup_delay
from aggregator.store import models as m
from aggregator.store.polls import PollRecord, insert_polls
from aggregator.store.rows import SYNC_COLUMNS, FeedState, sync_columns

if TYPE_CHECKING:
    from sqlalchemy import Table

    from aggregator.config.feeds import FeedSpec

__all__ = ["KEEP", "Claim", "FeedState", "FeedUpdate", "FeedsMixin", "LeaseLost", "PollOutcome"]

log = logging.getLogger(__name__)


class LeaseLost(AggregatorError, RuntimeError):
    """A poll's results were refused: its lease was taken over meanwhile.

    The daemon that polled was presumed dead (its heartbeat went stale) and
    another daemon took the feed; storing this poll too could store the feed
    twice.  Nothing was written; the other daemon's poll stands.  Frequent,
    it means heartbeats are late: check the database's latency and the
    daemons' clocks.
    """

    def __init__(self, feed_id: int, held: int, current: int) -> None:
        super().__init__(
            f"feed {feed_id}: lease {held} was taken over (now {current}); "
            "this poll's results were dropped so the feed is not stored twice"
        )
        self.feed_id = feed_id


@dataclass(frozen=True, slots=True)
class Claim:
    """A leased feed: its id and URL, the lease's fencing token, and when its
    request may start (politeness across the fleet, see policy.fleet)."""

    feed_id: int
    url: str
    token: int
    start_at: datetime


class _Keep(enum.Enum):
    KEEP = "keep"


#: A :class:`FeedUpdate` field left at KEEP is not written (None is a value: it clears).
KEEP: Final = _Keep.KEEP
_Keepable = Literal[_Keep.KEEP]


@dataclass(frozen=True, slots=True)
class FeedUpdate:
    """The columns of a feed row a poll may change, each KEEP unless given.

    A success, a failure and a deferral each set their own subset (see
    ``service.pipeline``); ``None`` clears a column, KEEP leaves it as it is.
    The field names are the column names.
    """

    next_check_at: datetime | _Keepable | None = KEEP
    lease_until: datetime | _Keepable | None = KEEP
    lease_owner: str | _Keepable | None = KEEP
    etag: str | _Keepable | None = KEEP
    last_modified: str | _Keepable | None = KEEP
    last_checked_at: datetime | _Keepable | None = KEEP
    last_success_at: datetime | _Keepable | None = KEEP
    last_status: int | _Keepable | None = KEEP
    last_error: str | _Keepable | None = KEEP
    error_class: str | _Keepable | None = KEEP
    error_streak: int | _Keepable = KEEP
    first_error_at: datetime | _Keepable | None = KEEP
    disabled_reason: str | _Keepable | None = KEEP
    #: Not a column: the fencing token of the lease the poll held
    #: (:class:`Claim.token`).  When set, the row is written only if it still
    #: carries this token; otherwise the poll outlived its lease and another
    #: daemon owns the feed (see :class:`LeaseLost`).
    fence: int | None = None

    def values(self) -> dict[str, Any]:
        """The columns to write, by name (the fields that are not KEEP)."""
        return {
            name: value for name in _UPDATE_FIELDS if (value := getattr(self, name)) is not KEEP
        }


_UPDATE_FIELDS: Final = tuple(f.name for f in fields(FeedUpdate) if f.name != "fence")
#: A claim reads at most this many due feeds per host, and this many in all.
_PER_HOST_SCAN: Final = 16
_SCAN: Final = 2000
_HOSTS: Final = cast("Table", m.HostSlot.__table__)
_FEEDS: Final = cast("Table", m.Feed.__table__)
#: The columns of a :class:`FeedState`, in its field order (the counts excepted).
_STATES: Final = select(
    *(_FEEDS.c[f.name] for f in fields(FeedState) if f.name not in ("posts", "blocked"))
).where(_FEEDS.c.id.in_(bindparam("b_ids", expanding=True)))
#: The fenced rows of a batch of polls, locked in id order (no deadlock between daemons).
_TOKENS: Final = (
    select(_FEEDS.c.id, _FEEDS.c.lease_token)
    .where(_FEEDS.c.id.in_(bindparam("b_ids", expanding=True)))
    .order_by(_FEEDS.c.id)
    .with_for_update()
)
#: A poll's feed row by id; the columns set are the parameters' keys.
_UPDATE_FEED: Final = update(_FEEDS).where(_FEEDS.c.id == bindparam("b_id"))


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """What one finished poll writes (:meth:`FeedsMixin.finish_polls`): its feed
    row's change (None when an ingest already wrote it), and its history row."""

    feed_id: int
    update: FeedUpdate | None
    record: PollRecord | None


def check_fence(session: Session, feed_id: int, fence: int | None) -> None:
    """Lock the feed row and raise :class:`LeaseLost` unless it carries ``fence``.

    Called at the start of the transaction that stores a poll: the row lock
    (FOR UPDATE on PostgreSQL; SQLite has one writer) holds the token still
    until the commit, so no claim can slip in between check and write.
    """
    if fence is None:
        return
    current = session.execute(
        select(m.Feed.lease_token).where(m.Feed.id == feed_id).with_for_update()
    ).scalar_one_or_none()
    if current is not None and current != fence:
        raise LeaseLost(feed_id, fence, current)


def _insert_ignore(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING, on PostgreSQL and SQLite."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        session.execute(pg_insert(table).on_conflict_do_nothing(), rows)
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        session.execute(sqlite_insert(table).on_conflict_do_nothing(), rows)
    else:  # pragma: no cover - the two backends we support
        session.execute(insert(table).prefix_with("OR IGNORE"), rows)


#: The feed columns feeds.yaml sets, by the name :meth:`FeedsMixin.sync_feeds` compares them under.
_SYNCED: Final = {name: getattr(m.Feed, name) for name in SYNC_COLUMNS}


class FeedsMixin:
    """The feeds table's queries, for :class:`aggregator.store.store.Store`."""

    _session: sessionmaker[Session]
    engine: Engine

    def sync_feeds(
        self, specs: Sequence[FeedSpec], *, now: datetime, spread_new: bool = True
    ) -> dict[str, int]:
        """Make the feeds table agree with feeds.yaml; returns url -> feed id.

        New feeds become due within a couple of minutes (spread at random, so a
        first start does not poll everything in one burst); edited feeds take
        their new settings but keep their schedule, validators and error state;
        feeds no longer in the file stop being polled and keep their posts.
        """
        # Columns and plain rows, not ORM objects: at 30,000 feeds a unit of
        # work over as many Feed instances held megabytes the daemon never gave
        # back (memory that grew with the feed count, issue 15), for a diff
        # that needs only these values.
        cols = (m.Feed.id, m.Feed.url, m.Feed.next_check_at, *_SYNCED.values())
        with self._session.begin() as session:
            rows = {row.url: row for row in session.execute(select(*cols))}
            ids: dict[str, int] = {}
            new: list[dict[str, Any]] = []
            changes: list[dict[str, Any]] = []
            seen: dict[str, None] = {}  # the listed URLs, in the file's order
            for spec in specs:
                if spec.url in seen:
                    continue
                seen[spec.url] = None
                wanted = sync_columns(spec)
                interval = wanted["interval_seconds"]
                row = rows.get(spec.url)
                if row is None:
                    new.append(
                        {
                            "url": spec.url,
                            "next_check_at": now + startup_delay(spec.interval)
                            if spread_new
                            else now,
                            "error_streak": 0,
                            "created_at": now,
                            "updated_at": now,
                            **wanted,
                        }
                    )
                    continue
                ids[spec.url] = row.id
                # Every `fetch` and every reload runs this over every feed:
                # rows whose settings did not change are not written.
                changed: dict[str, Any] = {k: v for k, v in wanted.items() if getattr(row, k) != v}
                if row.next_check_at is not None and interval < row.interval_seconds:
                    # A shorter interval should take effect now, not after the old one.
                    soon = min(row.next_check_at, now + timedelta(seconds=interval))
                    if soon != row.next_check_at:
                        changed["next_check_at"] = soon
                if changed:
                    changes.append({"id": row.id, **changed, "updated_at": now})
            for url, row in rows.items():
                if url not in seen and row.in_config:
                    changes.append(
                        {"id": row.id, "in_config": False, "lease_until": None, "updated_at": now}
                    )
            if changes:
                session.execute(update(m.Feed), changes)  # bulk UPDATE by primary key
            if new:
                for feed_id, url in session.execute(
                    insert(m.Feed).returning(m.Feed.id, m.Feed.url), new
                ):
                    ids[url] = feed_id
            return {url: ids[url] for url in seen}

    # -- leases ----------------------------------------------------------------

    def claim_due(
        self, *, now: datetime, limit: int, lease: timedelta, owner: str
    ) -> list[tuple[int, str]]:
        """Lease up to ``limit`` due feeds to ``owner``; returns (id, url) pairs.

        One statement, so two daemons can never claim the same feed: on
        PostgreSQL the candidate rows are locked with ``FOR UPDATE SKIP
        LOCKED`` (a concurrent claimer skips them instead of waiting); SQLite
        runs one writer at a time, so the same ``UPDATE ... RETURNING`` is
        atomic there too (SQLAlchemy drops FOR UPDATE on SQLite).  A lease
        that is not released -- a crashed daemon -- expires by itself.
        """
        if limit <= 0:
            return []
        due = (
            select(m.Feed.id)
            .where(
                m.Feed.enabled.is_(True),
                m.Feed.in_config.is_(True),
                m.Feed.disabled_reason.is_(None),
                m.Feed.next_check_at <= now,
                or_(m.Feed.lease_until.is_(None), m.Feed.lease_until < now),
            )
            .order_by(m.Feed.next_check_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        statement = (
            update(m.Feed)
            .where(m.Feed.id.in_(due.scalar_subquery()))
            .values(lease_until=now + lease, lease_owner=owner, lease_token=m.Feed.lease_token + 1)
            .returning(m.Feed.id, m.Feed.url)
            .execution_options(synchronize_session=False)
        )
        with self._session.begin() as session:
            return [(fid, url) for fid, url in session.execute(statement)]

    def claim_fair(
        self,
        *,
        now: datetime,
        limit: int,
        lease: timedelta,
        owner: str,
        policy_for: Callable[[str], HostPolicy],
        horizon: timedelta = timedelta(seconds=2),
    ) -> list[Claim]:
        """Lease up to ``limit`` due feeds, in due order, that their hosts allow.

        Like :meth:`claim_due`, but polite across the whole fleet: the due
        feeds (at most ``limit`` per host, the earliest first) are locked
        with ``FOR UPDATE SKIP LOCKED``, then their hosts' rows in ``hosts``
        (in name order, so two daemons never deadlock), and
        :func:`aggregator.policy.fleet.plan_claims` decides from the leases
        held per host and each host's next start which feeds to take and
        when each may start.  The hosts' next starts are written in the same
        transaction, so every daemon sees the budget the others spent.
        Each lease gets a new fencing token (:class:`Claim.token`).
        """
        if limit <= 0:
            return []
        free = and_(
            m.Feed.enabled.is_(True),
            m.Feed.in_config.is_(True),
            m.Feed.disabled_reason.is_(None),
            m.Feed.next_check_at <= now,
            or_(m.Feed.lease_until.is_(None), m.Feed.lease_until < now),
            # Not the hosts another daemon is polling now: neither locked nor
            # waited for (claims of several daemons would queue on them).
            ~exists().where(
                m.HostSlot.host == m.Feed.host,
                m.HostSlot.holder != owner,
                m.HostSlot.held_until > now,
            ),
        )
        rank = (
            func.row_number()
            .over(partition_by=m.Feed.host, order_by=(m.Feed.next_check_at, m.Feed.id))
            .label("rank")
        )
        ranked = select(m.Feed.id.label("id"), rank).where(free).subquery()
        firsts = select(ranked.c.id).where(ranked.c.rank <= min(limit, _PER_HOST_SCAN))
        # Not locked: locking every due row would make the other daemons'
        # claims, running at the same moment, find nothing at all.  The
        # UPDATE below takes only rows still free, so a feed another daemon
        # claimed meanwhile is simply not ours.
        due = (
            select(m.Feed.id, m.Feed.url, m.Feed.host, m.Feed.next_check_at)
            .where(m.Feed.id.in_(firsts))
            .order_by(m.Feed.next_check_at, m.Feed.id)
            .limit(_SCAN)
        )
        started = time.monotonic()
        with self._session.begin() as session:
            candidates = [
                Candidate(fid, url, host or host_of(url), due_at or now)
                for fid, url, host, due_at in session.execute(due)
            ]
            if not candidates:
                return []
            hosts = sorted({c.host for c in candidates})
            _insert_ignore(session, _HOSTS, [{"host": h} for h in hosts])
            slots = {
                host: (next_at, holder, until)
                for host, next_at, holder, until in session.execute(
                    select(
                        m.HostSlot.host,
                        m.HostSlot.next_start_at,
                        m.HostSlot.holder,
                        m.HostSlot.held_until,
                    )
                    .where(m.HostSlot.host.in_(hosts))
                    .order_by(m.HostSlot.host)
                    .with_for_update()
                )
            }
            in_flight = dict(
                session.execute(
                    select(m.Feed.host, func.count())
                    .where(
                        m.Feed.host.in_(hosts),
                        m.Feed.lease_owner.is_not(None),
                        m.Feed.lease_until >= now,
                    )
                    .group_by(m.Feed.host)
                ).all()
            )
            budgets = {
                h: HostBudget(int(in_flight.get(h, 0)), *slots.get(h, (None, None, None)))
                for h in hosts
            }
            plan = plan_claims(
                candidates,
                budgets,
                policy_for,
                now=now,
                limit=limit,
                horizon=horizon,
                me=owner,
                settle=timedelta(seconds=time.monotonic() - started),
            )
            if not plan.chosen:
                return []
            starts = {c.feed_id: (c.url, at) for c, at in plan.chosen}
            tokens = session.execute(
                update(m.Feed)
                .where(m.Feed.id.in_(list(starts)), free)
                .values(
                    lease_until=now + lease, lease_owner=owner, lease_token=m.Feed.lease_token + 1
                )
                .returning(m.Feed.id, m.Feed.lease_token)
                .execution_options(synchronize_session=False)
            ).all()
            if plan.next_start:
                session.execute(
                    update(_HOSTS)
                    .where(_HOSTS.c.host == bindparam("b_host"))
                    .values(
                        next_start_at=bindparam("b_next"),
                        holder=owner,
                        held_until=bindparam("b_until"),
                    ),
                    [
                        {"b_host": h, "b_next": at, "b_until": plan.held.get(h, now)}
                        for h, at in plan.next_start.items()
                    ],
                )
        claims = [Claim(fid, starts[fid][0], token, starts[fid][1]) for fid, token in tokens]
        return sorted(claims, key=lambda c: c.start_at)

    # -- daemons and their heartbeats ---------------------------------------------

    def register_daemon(self, owner: str, *, host: str, pid: int, now: datetime) -> None:
        """Write (or rewrite) this daemon's row with a fresh heartbeat."""
        with self._session.begin() as session:
            session.execute(delete(m.Daemon).where(m.Daemon.id == owner))
            session.add(m.Daemon(id=owner, host=host, pid=pid, started_at=now, heartbeat_at=now))

    def heartbeat(self, owner: str, *, now: datetime) -> bool:
        """Renew this daemon's heartbeat; False if its row is gone (it was
        presumed dead and its leases handed out: register again)."""
        with self._session.begin() as session:
            result = session.execute(
                update(m.Daemon).where(m.Daemon.id == owner).values(heartbeat_at=now)
            )
            return bool(getattr(result, "rowcount", 0))

    def reap_daemons(self, *, now: datetime, stale_after: timedelta) -> dict[str, int]:
        """Forget daemons whose heartbeat is older than ``stale_after`` and
        free their leases (new tokens); returns owner -> leases freed.

        Any daemon may run this: the stale rows are locked with SKIP LOCKED,
        so two daemons reaping at once free each lease once.
        """
        with self._session.begin() as session:
            stale = list(
                session.scalars(
                    select(m.Daemon.id)
                    .where(m.Daemon.heartbeat_at < now - stale_after)
                    .order_by(m.Daemon.id)
                    .with_for_update(skip_locked=True)
                )
            )
            if not stale:
                return {}
            freed = dict(
                session.execute(
                    select(m.Feed.lease_owner, func.count())
                    .where(m.Feed.lease_owner.in_(stale))
                    .group_by(m.Feed.lease_owner)
                ).all()
            )
            session.execute(
                update(m.Feed)
                .where(m.Feed.lease_owner.in_(stale))
                .values(lease_until=None, lease_owner=None, lease_token=m.Feed.lease_token + 1)
                .execution_options(synchronize_session=False)
            )
            session.execute(
                update(_HOSTS)
                .where(_HOSTS.c.holder.in_(stale))
                .values(holder=None, held_until=None)
            )
            session.execute(delete(m.Daemon).where(m.Daemon.id.in_(stale)))
        return {owner: int(freed.get(owner, 0)) for owner in stale}

    def retire_daemon(self, owner: str) -> int:
        """A daemon stops: give back every lease it holds and delete its row
        (a rolling restart hands the feeds over at once); returns leases freed."""
        with self._session.begin() as session:
            result = session.execute(
                update(m.Feed)
                .where(m.Feed.lease_owner == owner)
                .values(lease_until=None, lease_owner=None, lease_token=m.Feed.lease_token + 1)
                .execution_options(synchronize_session=False)
            )
            session.execute(
                update(_HOSTS).where(_HOSTS.c.holder == owner).values(holder=None, held_until=None)
            )
            session.execute(delete(m.Daemon).where(m.Daemon.id == owner))
            return int(getattr(result, "rowcount", 0) or 0)

    def daemons(self) -> list[tuple[str, datetime, datetime]]:
        """The registered daemons: (owner, started_at, heartbeat_at)."""
        with self._session() as session:
            return [
                (owner, started, beat)
                for owner, started, beat in session.execute(
                    select(m.Daemon.id, m.Daemon.started_at, m.Daemon.heartbeat_at).order_by(
                        m.Daemon.id
                    )
                )
            ]

    def release(self, feed_ids: Iterable[int], *, owner: str) -> None:
        """Give back leases this owner holds (shutdown, removed feeds)."""
        ids = list(feed_ids)
        if not ids:
            return
        with self._session.begin() as session:
            session.execute(
                update(m.Feed)
                .where(m.Feed.id.in_(ids), m.Feed.lease_owner == owner)
                .values(lease_until=None, lease_owner=None, lease_token=m.Feed.lease_token + 1)
            )

    def lease_owners(self, *, now: datetime) -> set[str]:
        """Owners holding at least one unexpired lease (to spot dead daemons)."""
        query = (
            select(m.Feed.lease_owner)
            .where(m.Feed.lease_owner.is_not(None), m.Feed.lease_until >= now)
            .distinct()
        )
        with self._session() as session:
            return {owner for owner in session.scalars(query) if owner}

    def release_owners(self, owners: Iterable[str]) -> int:
        """Drop every lease held by ``owners`` (known dead); returns the feeds freed."""
        names = list(owners)
        if not names:
            return 0
        with self._session.begin() as session:
            result = session.execute(
                update(m.Feed)
                .where(m.Feed.lease_owner.in_(names))
                .values(lease_until=None, lease_owner=None, lease_token=m.Feed.lease_token + 1)
                .execution_options(synchronize_session=False)
            )
            return int(getattr(result, "rowcount", 0) or 0)

    # -- reads -----------------------------------------------------------------

    def feed_counts(self, *, now: datetime) -> tuple[int, int, int]:
        """(due, leased, active) feed counts, for the metrics gauges."""
        active = and_(
            m.Feed.enabled.is_(True), m.Feed.in_config.is_(True), m.Feed.disabled_reason.is_(None)
        )
        leased = and_(m.Feed.lease_until.is_not(None), m.Feed.lease_until >= now)
        query = select(
            func.count().filter(and_(active, m.Feed.next_check_at <= now, not_(leased))),
            func.count().filter(leased),
            func.count().filter(active),
        ).select_from(m.Feed)
        with self._session() as session:
            due_n, leased_n, active_n = session.execute(query).one()
        return int(due_n), int(leased_n), int(active_n)

    def feed_state(self, feed_id: int) -> FeedState:
        with self._session() as session:
            row = session.get(m.Feed, feed_id)
            if row is None:
                raise LookupError(f"no feed with id {feed_id}")
            return FeedState.of(row)

    def feed_states(self, feed_ids: Iterable[int]) -> dict[int, FeedState]:
        """Several feeds' rows in one query (``feed_state`` for a whole pass).

        Core, not ORM: every claim of the daemon reads its feeds' rows, and
        loading them as ``Feed`` objects (identity map, instrumented
        attributes) only to copy them into plain :class:`FeedState` values
        cost more than the query.
        """
        ids = list(feed_ids)
        states: dict[int, FeedState] = {}
        with self.engine.connect() as connection:
            for start in range(0, len(ids), 500):  # under SQLite's variable limit
                chunk = ids[start : start + 500]
                for row in connection.execute(_STATES, {"b_ids": chunk}):
                    states[row[0]] = FeedState(*row)
        return states

    def feeds(self) -> list[FeedState]:
        """Every feed, for ``aggregator status``."""
        with self._session() as session:
            counts = {
                feed_id: (posts, blocked)
                for feed_id, posts, blocked in session.execute(
                    select(
                        m.Entry.feed_id,
                        func.count(func.distinct(m.Entry.post_id)),
                        func.count(m.Entry.blocked),
                    ).group_by(m.Entry.feed_id)
                ).all()
            }
            return [
                FeedState.of(
                    row, posts=counts.get(row.id, (0, 0))[0], blocked=counts.get(row.id, (0, 0))[1]
                )
                for row in session.scalars(select(m.Feed).order_by(m.Feed.id))
            ]

    def feed_ids(self, urls: Iterable[str]) -> dict[str, int]:
        with self._session() as session:
            rows = session.execute(select(m.Feed.url, m.Feed.id).where(m.Feed.url.in_(list(urls))))
            return {url: fid for url, fid in rows}

    # -- a poll's outcome --------------------------------------------------------

    def update_feed(self, feed_id: int, change: FeedUpdate) -> None:
        """Record one poll's outcome on its feed row (failure state, lease release)."""
        self.update_feeds([(feed_id, change)])

    def update_feeds(self, changes: Sequence[tuple[int, FeedUpdate]]) -> None:
        """Record many polls' outcomes in one transaction.

        A pass over hundreds of unchanged feeds ends in hundreds of small
        updates (a 304's validators and next poll time); one commit for all
        of them instead of one each is most of what such a pass costs the
        database.  Rows with the same columns go in one executemany.
        """
        merged: dict[int, dict[str, Any]] = {}
        fences: dict[int, int] = {}
        for feed_id, change in changes:  # later changes to one row win
            merged.setdefault(feed_id, {}).update(change.values())
            if change.fence is not None:
                fences[feed_id] = change.fence
        if not any(merged.values()):
            return
        with self._session.begin() as session:
            if fences:
                # Lock the fenced rows (in id order: no deadlock between
                # daemons) and drop the polls whose lease was taken over.
                current = dict(
                    session.execute(
                        select(m.Feed.id, m.Feed.lease_token)
                        .where(m.Feed.id.in_(sorted(fences)))
                        .order_by(m.Feed.id)
                        .with_for_update()
                    ).all()
                )
                for feed_id, fence in fences.items():
                    if feed_id in current and current[feed_id] != fence:
                        log.warning("%s", LeaseLost(feed_id, fence, current[feed_id]))
                        merged.pop(feed_id, None)
            groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for feed_id, values in merged.items():
                if values:
                    groups.setdefault(tuple(sorted(values)), []).append({**values, "id": feed_id})
            for rows in groups.values():
                session.execute(update(m.Feed), rows)

    def finish_polls(self, outcomes: Sequence[PollOutcome]) -> list[Exception | None]:
        """Record a batch of finished polls: each one's feed row (its schedule,
        validators or error state, and the lease given back) and its line in
        the poll history, all in one transaction; results in order.

        A daemon's round of 304s is made of these: one transaction and a
        few Core statements (the fence check, the feed rows, the history and
        its hourly counts) for the whole batch.  Two transactions, the rows
        through an ORM bulk update, were three times the CPU.

        A fenced poll whose lease was taken over (:class:`LeaseLost`) writes
        nothing, neither its row nor its history; its place holds the
        exception.  If the batch is refused (a value the database will not
        take), each poll is written on its own, so only the one at fault
        gets the error.
        """
        if not outcomes:
            return []
        try:
            with self.engine.begin() as connection:
                return self._finish_polls(connection, outcomes)
        except (DataError, IntegrityError) as exc:
            if len(outcomes) == 1:
                raise
            log.debug("batch of %d polls refused (%s); one by one", len(outcomes), exc)
        results: list[Exception | None] = []
        for outcome in outcomes:
            try:
                with self.engine.begin() as connection:
                    results.extend(self._finish_polls(connection, [outcome]))
            except (DataError, IntegrityError) as exc:
                results.append(exc)
        return results

    def _finish_polls(
        self, connection: Connection, outcomes: Sequence[PollOutcome]
    ) -> list[Exception | None]:
        fences = {
            o.feed_id: o.update.fence
            for o in outcomes
            if o.update is not None and o.update.fence is not None
        }
        lost: dict[int, LeaseLost] = {}
        if fences:
            for feed_id, token in connection.execute(_TOKENS, {"b_ids": sorted(fences)}):
                if token != fences[feed_id]:
                    lost[feed_id] = LeaseLost(feed_id, fences[feed_id], token)
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for outcome in outcomes:
            if outcome.update is None or outcome.feed_id in lost:
                continue
            values = outcome.update.values()
            if values:
                values["b_id"] = outcome.feed_id
                groups.setdefault(tuple(values), []).append(values)
        for rows in groups.values():
            connection.execute(_UPDATE_FEED, rows)
        insert_polls(
            connection,
            [o.record for o in outcomes if o.record is not None and o.feed_id not in lost],
        )
        return [lost.get(o.feed_id) for o in outcomes]
