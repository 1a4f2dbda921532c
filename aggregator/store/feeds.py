"""Feed rows: feeds.yaml into the table, the leases, and what a poll records.

The feeds table is where the schedule survives a restart (ARCHITECTURE
invariant 4) and where several daemons on one database take turns (a lease
per feed, invariant 6).  A poll's outcome comes in as a :class:`FeedUpdate`,
a typed record of the columns a poll may change, so a misspelt column is a
type error, not a failed UPDATE at run time.
"""

from __future__ import annotations

import enum
import functools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from sqlalchemy import (
    Integer,
    String,
    and_,
    bindparam,
    column,
    delete,
    func,
    insert,
    not_,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from aggregator.errors import AggregatorError
from aggregator.policy.fleet import (
    Candidate,
    FleetShare,
    HostBudget,
    host_turns,
    plan_claims,
)
from aggregator.policy.politeness import HostPolicy
from aggregator.policy.schedule import startup_delay
from aggregator.store import models as m
from aggregator.store.polls import PollRecord, insert_polls
from aggregator.store.rows import SYNC_COLUMNS, FeedState, sync_columns

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.sql.selectable import TextualSelect

    from aggregator.config.spec import FeedSpec

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
    #: The feed's row as leased (the claim returns it: no second read).
    state: FeedState | None = None


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
_FEEDS: Final = cast("Table", m.Feed.__table__)
#: The feed row's columns a :class:`FeedState` holds, in its field order.
_STATE_COLUMNS: Final = tuple(
    _FEEDS.c[f.name] for f in fields(FeedState) if f.name not in ("posts", "blocked")
)
_HOSTS: Final = cast("Table", m.HostSlot.__table__)
#: The :class:`FeedState` rows of a batch of feed ids.
_STATES: Final = select(*_STATE_COLUMNS).where(_FEEDS.c.id.in_(bindparam("b_ids", expanding=True)))
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
#: Feeds :meth:`FeedStore.sync_feeds` diffs and writes at a time (bounded
#: memory whatever the file's size; well under SQLite's bound parameters).
SYNC_BATCH: Final = 500


_DAEMONS: Final = cast("Table", m.Daemon.__table__)

# -- the claim's statements, built once -----------------------------------------
#
# A daemon claims many times a minute (every second, and again whenever half
# its slots are free), so each claim's statements are built here once, with
# bound parameters, and run on a plain Connection: building them anew on
# every claim, through an ORM Session, was most of the claim's CPU -- the
# database's own work is a fraction of a millisecond.  SQLAlchemy keys its
# compiled-statement cache on the statement object, and a prebuilt one
# remembers its key, so a claim compiles nothing.

#: The claim's clock (every comparison with "now" in one statement shares it).
_NOW: Final = bindparam("b_now", type_=m.UTCDateTime)
#: A feed that may be leased now: active, due, and its lease free.
_FREE: Final = and_(
    _FEEDS.c.enabled.is_(True),
    _FEEDS.c.in_config.is_(True),
    _FEEDS.c.disabled_reason.is_(None),
    _FEEDS.c.next_check_at <= _NOW,
    or_(_FEEDS.c.lease_until.is_(None), _FEEDS.c.lease_until < _NOW),
)
#: The live daemons (heartbeat since ``b_live_since``), the spaced hosts each
#: holds, and how many hosts the table has: :class:`FleetShare`.
_FLEET_SHARE: Final = select(
    _DAEMONS.c.id,
    select(func.count())
    .where(_HOSTS.c.holder == _DAEMONS.c.id, _HOSTS.c.held_until > _NOW)
    .scalar_subquery(),
    select(func.count()).select_from(_HOSTS).scalar_subquery(),
).where(_DAEMONS.c.heartbeat_at >= bindparam("b_live_since", type_=m.UTCDateTime))
#: The hosts that could be ``b_owner``'s now, locked (SKIP LOCKED: a host
#: another daemon is claiming right now is skipped, never waited for).
_SLOTS: Final = (
    select(_HOSTS.c.host, _HOSTS.c.next_start_at, _HOSTS.c.holder, _HOSTS.c.held_until)
    .where(
        or_(
            _HOSTS.c.holder.is_(None),
            _HOSTS.c.holder == bindparam("b_owner", type_=String),
            _HOSTS.c.held_until <= _NOW,
        ),
        or_(
            _HOSTS.c.next_start_at.is_(None),
            _HOSTS.c.next_start_at <= bindparam("b_latest", type_=m.UTCDateTime),
        ),
    )
    .order_by(_HOSTS.c.host)
    .with_for_update(skip_locked=True)
)
#: Each host's leases in flight, by any daemon.  All hosts, not only the
#: claim's: the partial index ``ix_feeds_leased_host`` holds only the leased
#: rows (a few dozen per daemon), and a fixed statement needs no IN list
#: rendered for every claim.
_IN_FLIGHT: Final = (
    select(_FEEDS.c.host, func.count())
    .where(_FEEDS.c.lease_owner.is_not(None), _FEEDS.c.lease_until >= _NOW)
    .group_by(_FEEDS.c.host)
)
_RANKED: Final = (
    select(
        _FEEDS.c.id,
        _FEEDS.c.url,
        _FEEDS.c.host,
        _FEEDS.c.next_check_at,
        func.row_number()
        .over(partition_by=_FEEDS.c.host, order_by=(_FEEDS.c.next_check_at, _FEEDS.c.id))
        .label("rank"),
    )
    .where(_FEEDS.c.host.in_(bindparam("b_hosts", expanding=True)), _FREE)
    .subquery()
)
#: SQLite: the given hosts' free due feeds, numbered per host in due order,
#: up to ``b_most`` each (the caller keeps each host's own number).
_SQLITE_DUE: Final = select(_RANKED).where(_RANKED.c.rank <= bindparam("b_most", type_=Integer))
#: SQLite, one host (a daemon polling a local RSSHub, the benchmark's farm):
#: its first ``b_k`` free due feeds, a short range of ``feeds (host,
#: next_check_at)`` -- the window above numbers every due feed of the host.
_SQLITE_DUE_ONE: Final = (
    select(_FEEDS.c.id, _FEEDS.c.url, _FEEDS.c.host, _FEEDS.c.next_check_at)
    .where(_FEEDS.c.host == bindparam("b_host", type_=String), _FREE)
    .order_by(_FEEDS.c.next_check_at, _FEEDS.c.id)
    .limit(bindparam("b_k", type_=Integer))
)
#: Lease the chosen feeds that are still free: a new fencing token each, and
#: their rows back (:class:`Claim.state`).  On the table, not the mapped
#: class: the ORM's bulk-update path was a third of the claim's CPU.
_LEASE: Final = (
    update(_FEEDS)
    .where(_FEEDS.c.id.in_(bindparam("b_ids", expanding=True)), _FREE)
    .values(
        lease_until=bindparam("b_until", type_=m.UTCDateTime),
        lease_owner=bindparam("b_owner", type_=String),
        lease_token=_FEEDS.c.lease_token + 1,
    )
    .returning(_FEEDS.c.lease_token, *_STATE_COLUMNS)
)
#: A spaced host's next start and this daemon's hold on it (executemany).
_HOLD: Final = (
    update(_HOSTS)
    .where(_HOSTS.c.host == bindparam("b_host", type_=String))
    .values(
        next_start_at=bindparam("b_next", type_=m.UTCDateTime),
        holder=bindparam("b_owner", type_=String),
        held_until=bindparam("b_until", type_=m.UTCDateTime),
    )
)


def _fleet_share(
    connection: Connection, *, now: datetime, live_after: timedelta
) -> FleetShare | None:
    """The live daemons and the spaced hosts each holds (None: no daemon rows)."""
    rows = connection.execute(_FLEET_SHARE, {"b_now": now, "b_live_since": now - live_after}).all()
    if not rows:
        return None
    return FleetShare(hosts=int(rows[0][2]), holds={d: int(n) for d, n, _ in rows})


@functools.cache
def _lateral_due() -> TextualSelect:
    """PostgreSQL: each host's first ``k`` free due feeds (built once: a text
    statement is compiled again whenever it is a new object)."""
    from sqlalchemy.dialects.postgresql import ARRAY

    return (
        text(
            "SELECT f.id, f.url, f.host, f.next_check_at"
            " FROM unnest(:hosts, :ks) AS w(host, k)"
            " CROSS JOIN LATERAL ("
            "   SELECT id, url, host, next_check_at FROM feeds"
            "   WHERE feeds.host = w.host AND enabled AND in_config"
            "     AND disabled_reason IS NULL AND next_check_at <= :now"
            "     AND (lease_until IS NULL OR lease_until < :now)"
            "   ORDER BY next_check_at LIMIT w.k) AS f"
        )
        .bindparams(
            bindparam("hosts", type_=ARRAY(String)),
            bindparam("ks", type_=ARRAY(Integer)),
            bindparam("now", type_=m.UTCDateTime),
        )
        .columns(
            column("id", Integer),
            column("url", String),
            column("host", String),
            column("next_check_at", m.UTCDateTime),
        )
    )


def _due_per_host(
    connection: Connection, wanted: dict[str, int], *, now: datetime
) -> list[Candidate]:
    """Each host's earliest free due feeds, at most ``wanted[host]``, in due order.

    PostgreSQL reads them with one LATERAL join, a short index range per host
    (``feeds (host, next_check_at)``), so the cost follows the hosts asked
    for, not the thousands of feeds that may be due.  SQLite (one daemon, a
    small table) numbers those hosts' due feeds with a window instead (a
    UNION ALL of one LIMITed select per host measured slower: SQLAlchemy
    builds and keys a statement of that many terms on every claim); for a
    single host, the common case of a daemon on SQLite, it reads that
    host's first feeds in due order with a LIMIT.
    """
    if not wanted:
        return []
    names = list(wanted)
    rows: list[Any]
    if connection.dialect.name == "postgresql":
        params = {"hosts": names, "ks": [wanted[h] for h in names], "now": now}
        rows = list(connection.execute(_lateral_due(), params))
    elif len(names) == 1:
        params = {"b_host": names[0], "b_now": now, "b_k": wanted[names[0]]}
        rows = list(connection.execute(_SQLITE_DUE_ONE, params))
    else:
        params = {"b_hosts": names, "b_now": now, "b_most": max(wanted.values())}
        rows = [
            row[:4] for row in connection.execute(_SQLITE_DUE, params) if row[4] <= wanted[row[2]]
        ]
    candidates = [Candidate(fid, url, host, due_at or now) for fid, url, host, due_at in rows]
    candidates.sort(key=lambda c: (c.due_at, c.feed_id))
    return candidates


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
        # that needs only these values.  And SYNC_BATCH feeds at a time, in
        # the one transaction: the rows, the new rows' values and the
        # statements' parameters for the whole file at once were another
        # ~10 MB at 3,000 new feeds, a burst that left the heap that much
        # larger for good.
        cols = (m.Feed.id, m.Feed.url, m.Feed.next_check_at, *_SYNCED.values())
        with self._session.begin() as session:
            ids: dict[str, int] = {}
            seen: dict[str, None] = {}  # the listed URLs, in the file's order
            listed_hosts: set[str] = set()
            unique: list[FeedSpec] = []  # a URL listed twice: its first entry
            for spec in specs:
                if spec.url not in seen:
                    seen[spec.url] = None
                    unique.append(spec)
            for start in range(0, len(unique), SYNC_BATCH):
                batch = unique[start : start + SYNC_BATCH]
                rows = {
                    row.url: row
                    for row in session.execute(
                        select(*cols).where(m.Feed.url.in_([spec.url for spec in batch]))
                    )
                }
                new: list[dict[str, Any]] = []
                changes: list[dict[str, Any]] = []
                for spec in batch:
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
                    changed: dict[str, Any] = {
                        k: v for k, v in wanted.items() if getattr(row, k) != v
                    }
                    if row.next_check_at is not None and interval < row.interval_seconds:
                        # A shorter interval should take effect now, not after the old one.
                        soon = min(row.next_check_at, now + timedelta(seconds=interval))
                        if soon != row.next_check_at:
                            changed["next_check_at"] = soon
                    if changed:
                        changes.append({"id": row.id, **changed, "updated_at": now})
                if changes:
                    session.execute(update(m.Feed), changes)  # bulk UPDATE by primary key
                if new:
                    for feed_id, url in session.execute(
                        insert(m.Feed).returning(m.Feed.id, m.Feed.url), new
                    ):
                        ids[url] = feed_id
                # Every host a claim may meet has its row (claims start from them).
                listed_hosts |= {row.host for row in rows.values() if row.host}
                listed_hosts |= {values["host"] for values in new if values["host"]}
                listed_hosts |= {values["host"] for values in changes if values.get("host")}
            # Feeds no longer listed stop being polled.
            gone = [
                {"id": feed_id, "in_config": False, "lease_until": None, "updated_at": now}
                for feed_id, url in session.execute(
                    select(m.Feed.id, m.Feed.url).where(m.Feed.in_config.is_(True))
                )
                if url not in seen
            ]
            if gone:
                session.execute(update(m.Feed), gone)
            known = set(session.scalars(select(_HOSTS.c.host)))
            _insert_ignore(session, _HOSTS, [{"host": h} for h in sorted(listed_hosts - known)])
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
        live_after: timedelta = timedelta(seconds=25),
        read_at: float | None = None,
    ) -> list[Claim]:
        """Lease up to ``limit`` due feeds, in due order, that their hosts allow.

        Like :meth:`claim_due`, but polite across the whole fleet, and cheap
        at 30,000 feeds: it starts from the ``hosts`` table, not from the due
        feeds.  In one transaction:

        1. the fleet's live daemons (heartbeat within ``live_after``) and the
           spaced hosts each holds, for the fair share (policy.fleet);
        2. the hosts that could be this daemon's, locked ``FOR UPDATE SKIP
           LOCKED`` in name order: a host another daemon is claiming right now
           is skipped, never waited for;
        3. their leases in flight (read after the locks, so a claim committed
           meanwhile is counted; a partial index holds only the leased rows);
        4. :func:`aggregator.policy.fleet.host_turns` says which hosts may
           send, from when and how many; each such host's earliest due feeds,
           at most that many, are read through ``feeds (host, next_check_at)``
           (PostgreSQL: one LATERAL join; SQLite, one writer: a window over
           those hosts' due feeds);
        5. :func:`aggregator.policy.fleet.plan_claims` picks the feeds; they
           are leased (a new fencing token each, :class:`Claim.token`) and
           their rows come back with the lease, so the caller does not read
           them again (:class:`Claim.state`); the hosts' next starts and holds
           are written.

        ``read_at`` is the ``time.monotonic()`` at which ``now`` was read
        (default: when this method is entered): a host taken over from
        another daemon starts a spacing after the moment its leases were seen
        to be back, and a ``now`` read earlier -- a claim that waited for a
        worker thread -- would put that start too early by the wait.
        """
        if limit <= 0:
            return []
        read = time.monotonic() if read_at is None else read_at
        with self.engine.begin() as connection:
            share = _fleet_share(connection, now=now, live_after=live_after)
            slots = connection.execute(
                _SLOTS, {"b_owner": owner, "b_now": now, "b_latest": now + horizon}
            ).all()
            if not slots:
                return []
            in_flight: dict[str, int] = dict(connection.execute(_IN_FLIGHT, {"b_now": now}).all())
            budgets = {
                host: HostBudget(int(in_flight.get(host, 0)), next_start_at, holder, held_until)
                for host, next_start_at, holder, held_until in slots
            }
            settle = timedelta(seconds=max(0.0, time.monotonic() - read))
            turns = host_turns(
                budgets,
                policy_for,
                now=now,
                limit=limit,
                horizon=horizon,
                me=owner,
                settle=settle,
                share=share,
            )
            if not turns:
                return []
            candidates = _due_per_host(connection, {h: t.slots for h, t in turns.items()}, now=now)
            plan = plan_claims(
                candidates,
                budgets,
                policy_for,
                now=now,
                limit=limit,
                horizon=horizon,
                me=owner,
                settle=settle,
                share=share,
                turns=turns,
            )
            if not plan.chosen:
                return []
            starts = {c.feed_id: at for c, at in plan.chosen}
            leased = connection.execute(
                _LEASE,
                {"b_ids": list(starts), "b_now": now, "b_until": now + lease, "b_owner": owner},
            ).all()
            if plan.next_start:
                connection.execute(
                    _HOLD,
                    [
                        {
                            "b_host": h,
                            "b_next": at,
                            "b_owner": owner,
                            "b_until": plan.held.get(h, now),
                        }
                        for h, at in plan.next_start.items()
                    ],
                )
        claims = []
        for token, *columns in leased:
            state = FeedState(*columns)
            claims.append(Claim(state.id, state.url, token, starts[state.id], state))
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

    def validated_feeds(self) -> int:
        """How many feed rows carry an HTTP validator (an ETag or a Last-Modified).

        A pass asks before it starts its parse workers: a feed with a
        validator usually answers 304 and has nothing to parse, so a pass
        over such feeds (a warm ``fetch``) starts the workers only when a
        body arrives (``aggregator.service.runner``).  One count over the
        table, about a millisecond: the answer is a hint, not a plan.
        """
        query = (
            select(func.count())
            .select_from(_FEEDS)
            .where(or_(_FEEDS.c.etag.is_not(None), _FEEDS.c.last_modified.is_not(None)))
        )
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

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
