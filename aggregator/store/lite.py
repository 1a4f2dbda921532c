"""A SQLite database read through the standard library, for commands that must start fast.

Why SQLAlchemy is bypassed here: importing it costs 0.25-0.3 s (its ORM
more), longer than the 0.2 s a short command may take in all (issue 15),
while the standard library's ``sqlite3`` loads in 0.02 s.  ``aggregator
status`` and an ``aggregator fetch`` with nothing to poll run in milliseconds
once started, so on the default database (a SQLite file) they read it
through this module and import neither SQLAlchemy, pydantic nor ruamel.

This is a second reading of the same schema, so it is kept narrow and
checked against the library's answer (tests/test_status_light.py runs
every query here and the store's on the same databases):

* only what those two commands read: the feed rows with their post
  counts, the lease owners, the publishers' state, and the sync marker below;
* only a plain ``sqlite:///FILE`` URL naming a file that exists, at exactly
  the schema revision this code is written for; anything else -- PostgreSQL,
  an older or newer schema, a URL with options, no file -- makes
  :meth:`LiteReader.open` raise :class:`LiteUnavailable`, and the caller
  takes the full path, which also says what is wrong;
* values converted as SQLAlchemy converts them on SQLite: ``UTCDateTime``
  is stored as naive UTC text (``2026-12-03 14:35:00.123456``) and read back
  aware, Booleans are 0/1.

**The sync marker.**  Every ``fetch`` first makes the feeds table agree with
feeds.yaml (``Store.sync_feeds``); to skip that without loading the file
(ruamel and pydantic, ~0.2 s), a pass that found nothing to poll records,
in ``PRAGMA user_version``, a digest of the file's bytes, the code's version
and the feeds table's synced columns as they were after the sync.  The next
``fetch`` computes the same digest from the file and the table as they are:
equal means the same file over the same rows, so syncing again would change
nothing and there is still nothing to poll.  Any change -- an edited file,
another process's sync, a feed row's settings, another aggregator version --
gives another digest and the full path.  A stale marker is harmless (it
matches only the state it was computed from), so no writer has to clear it.
``user_version`` is a 32-bit header field no migration uses: 31 bits of
digest, so a changed state passes for the recorded one with a probability
of 2^-31.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from aggregator import __version__
from aggregator.config.digest import config_digest
from aggregator.errors import AggregatorError
from aggregator.store.rows import SYNC_COLUMNS, DaemonRow, FeedState, PublisherRow, sync_columns

if TYPE_CHECKING:
    from aggregator.config.spec import FeedSpec

__all__ = [
    "SCHEMA_REVISION",
    "LiteReader",
    "LiteUnavailable",
    "nothing_to_poll",
    "record_nothing_to_poll",
    "sqlite_file",
]

#: The newest migration in alembic/versions, which this code is written for
#: (tests/test_store.py checks it against Alembic's own idea of the head;
#: aggregator.store.engine re-exports it).
SCHEMA_REVISION: Final = "0009"

#: As aggregator.store.engine sets it on every connection: wait for a writer.
_BUSY_TIMEOUT_MS: Final = 30_000


class LiteUnavailable(AggregatorError):
    """This database cannot be read here; the caller takes the full (SQLAlchemy) path."""


def sqlite_file(url: str) -> Path | None:
    """The file a plain ``sqlite:///FILE`` URL names; None for any other URL.

    Only the simplest spelling is read here: URLs with options, in-memory or
    ``file:`` databases, escapes or ``~`` are left to SQLAlchemy (None).
    """
    for prefix in ("sqlite:///", "sqlite+pysqlite:///"):
        if url.startswith(prefix):
            name = url[len(prefix) :]
            break
    else:
        return None
    if not name or name == ":memory:" or name.startswith(("file:", "~")):
        return None
    if any(c in name for c in "?#%"):
        return None
    return Path(name)


def _text(moment: datetime) -> str:
    """A time as SQLAlchemy binds it on SQLite: naive UTC, always six decimals."""
    utc = moment.astimezone(UTC)
    return f"{utc:%Y-%m-%d %H:%M:%S}.{utc.microsecond:06d}"


def _utc(value: str | None) -> datetime | None:
    """A stored ``UTCDateTime`` as SQLAlchemy reads it: fromisoformat, then UTC attached."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


_FEED_COLUMNS: Final = (
    "id, url, outlet, section, enabled, in_config, interval_seconds, next_check_at, "
    "lease_until, etag, last_modified, last_checked_at, last_success_at, last_status, "
    "last_error, error_class, error_streak, first_error_at, disabled_reason, rsshub_route"
)
_SYNC_ROWS: Final = f"SELECT url, {', '.join(SYNC_COLUMNS)} FROM feeds ORDER BY id"


class LiteReader:
    """One sqlite3 connection to a database at :data:`SCHEMA_REVISION`; see the module doc."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    @classmethod
    def open(cls, url: str) -> LiteReader:
        """Connect, never creating the file; :class:`LiteUnavailable` unless all is as expected."""
        path = sqlite_file(url)
        if path is None:
            raise LiteUnavailable(f"not a plain SQLite file URL: {url!r}")
        if not path.is_file():
            raise LiteUnavailable(f"no database file {path}")
        try:
            # mode=rw: an existing file only (the SQLAlchemy path creates one).
            db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True)
        except sqlite3.Error as exc:
            raise LiteUnavailable(str(exc)) from exc
        reader = cls(db)
        try:
            db.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            revision = reader.revision()
        except LiteUnavailable:
            reader.close()
            raise
        except sqlite3.Error as exc:
            reader.close()
            raise LiteUnavailable(str(exc)) from exc
        if revision != SCHEMA_REVISION:
            reader.close()
            raise LiteUnavailable(f"schema {revision}, not {SCHEMA_REVISION}")
        return reader

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> LiteReader:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _all(self, sql: str, parameters: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(sql, parameters).fetchall()
        except sqlite3.Error as exc:  # locked past the timeout, a damaged file ...
            raise LiteUnavailable(str(exc)) from exc

    def revision(self) -> str | None:
        """``alembic_version`` as stored (None: no such table, or not one row)."""
        try:
            rows = self._db.execute("SELECT version_num FROM alembic_version").fetchall()
        except sqlite3.OperationalError:  # no such table
            return None
        return str(rows[0][0]) if len(rows) == 1 else None

    def feeds(self) -> list[FeedState]:
        """Every feed with its post and blocked counts, as ``Store.feeds`` returns them."""
        counts = {
            feed_id: (posts, blocked)
            for feed_id, posts, blocked in self._all(
                "SELECT feed_id, count(DISTINCT post_id), count(blocked) "
                "FROM entries GROUP BY feed_id"
            )
        }
        states = []
        for row in self._all(f"SELECT {_FEED_COLUMNS} FROM feeds ORDER BY id"):
            (fid, url, outlet, section, enabled, in_config, interval, next_check, lease_until,
             etag, last_modified, checked, success, status, error, error_class, streak,
             first_error, disabled, route) = row  # fmt: skip
            posts, blocked = counts.get(fid, (0, 0))
            states.append(
                FeedState(
                    id=fid,
                    url=url,
                    outlet=outlet,
                    section=section,
                    enabled=bool(enabled),
                    in_config=bool(in_config),
                    interval_seconds=interval,
                    next_check_at=_utc(next_check),
                    lease_until=_utc(lease_until),
                    etag=etag,
                    last_modified=last_modified,
                    last_checked_at=_utc(checked),
                    last_success_at=_utc(success),
                    last_status=status,
                    last_error=error,
                    error_class=error_class,
                    error_streak=streak,
                    first_error_at=_utc(first_error),
                    disabled_reason=disabled,
                    rsshub_route=route,
                    posts=posts,
                    blocked=blocked,
                )
            )
        return states

    def lease_owners(self, *, now: datetime) -> set[str]:
        """Owners holding an unexpired lease, as ``Store.lease_owners`` finds them."""
        rows = self._all(
            "SELECT DISTINCT lease_owner FROM feeds "
            "WHERE lease_owner IS NOT NULL AND lease_until >= ?",
            (_text(now),),
        )
        return {str(owner) for (owner,) in rows if owner}

    def fleet_daemons(self, *, now: datetime) -> list[DaemonRow]:
        """The registered daemons with their leases, as ``store.fleet.fleet_daemons``."""
        rows = self._all(
            "SELECT d.id, d.host, d.pid, d.started_at, d.heartbeat_at, "
            "(SELECT count(*) FROM feeds AS f WHERE f.lease_owner = d.id AND f.lease_until >= ?) "
            "FROM daemons AS d ORDER BY d.host, d.pid",
            (_text(now),),
        )
        daemons = []
        for owner, host, pid, started, beat, leases in rows:
            started_at, heartbeat_at = _utc(started), _utc(beat)
            assert started_at is not None and heartbeat_at is not None  # NOT NULL columns
            daemons.append(DaemonRow(owner, host, int(pid), started_at, heartbeat_at, int(leases)))
        return daemons

    def publisher_rows(self) -> list[PublisherRow]:
        """Every publisher's state with its queue, as ``store.publish.publisher_rows``."""
        rows = self._all(
            "SELECT p.name, p.last_run_at, p.last_success_at, p.last_error, p.last_error_at, "
            "p.pending, coalesce(q.queue, 0) FROM publishers AS p LEFT OUTER JOIN "
            "(SELECT webhook, count(*) AS queue FROM webhook_deliveries "
            "WHERE delivered_at IS NULL GROUP BY webhook) AS q ON q.webhook = p.name "
            "ORDER BY p.name"
        )
        return [
            PublisherRow(name, _utc(run), _utc(success), error, _utc(error_at), pending, queue)
            for name, run, success, error, error_at, pending, queue in rows
        ]

    # -- the sync marker (see the module docstring) ------------------------------------

    def _sync_rows(self) -> list[tuple[Any, ...]]:
        return self._all(_SYNC_ROWS)

    def marker(self) -> int:
        try:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error as exc:
            raise LiteUnavailable(str(exc)) from exc


def _marker(digest: str, rows: list[tuple[Any, ...]]) -> int:
    """``user_version``: 31 bits of the file's digest, the code and the synced rows, never 0."""
    h = hashlib.blake2b(digest_size=8)
    h.update(f"aggregator {__version__} schema {SCHEMA_REVISION} feeds.yaml {digest}\n".encode())
    h.update(repr(rows).encode("utf-8", "surrogatepass"))
    return (int.from_bytes(h.digest()[:4], "big") & 0x7FFF_FFFF) or 1


def _synced(rows: list[tuple[Any, ...]], specs: Sequence[FeedSpec]) -> bool:
    """Whether ``Store.sync_feeds(specs)`` would leave these rows as they are."""
    wanted = {spec.url: sync_columns(spec) for spec in specs}
    seen = 0
    for url, *values in rows:
        columns = dict(zip(SYNC_COLUMNS, values, strict=True))
        columns["enabled"], columns["in_config"] = (
            bool(columns["enabled"]),
            bool(columns["in_config"]),
        )
        want = wanted.get(str(url))
        if want is None:
            if columns["in_config"]:
                return False  # sync would mark it removed from the file
            continue
        if columns != want:
            return False
        seen += 1
    return seen == len(wanted)


def record_nothing_to_poll(url: str, digest: str, specs: Sequence[FeedSpec]) -> bool:
    """After a full ``fetch`` that had nothing to poll: set the marker (False if not set).

    Under SQLite's write lock, so that the rows read are the rows the marker
    describes; and only if they are what syncing ``specs`` leaves (a sync by
    another process may have come after ours).
    """
    try:
        reader = LiteReader.open(url)
    except LiteUnavailable:
        return False
    with reader:
        db = reader._db
        try:
            db.isolation_level = None  # explicit transactions below
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = reader._sync_rows()
                if not _synced(rows, specs):
                    return False
                db.execute(f"PRAGMA user_version = {_marker(digest, rows)}")
            finally:
                db.execute("COMMIT")
        except (sqlite3.Error, LiteUnavailable):
            return False
    return True


def nothing_to_poll(url: str, config_path: Path) -> bool:
    """Whether a ``fetch`` of every enabled feed in ``config_path`` would poll none and
    change nothing: the marker matches the file and the feed rows as they are now."""
    try:
        data = config_path.read_bytes()
        with LiteReader.open(url) as reader:
            stored = reader.marker()
            return stored != 0 and stored == _marker(config_digest(data), reader._sync_rows())
    except (OSError, LiteUnavailable):
        return False
