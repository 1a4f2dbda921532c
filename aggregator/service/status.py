"""What ``aggregator status`` reads and prints: the feed and publisher tables, the JSON.

Apart from the runner on purpose: ``status`` reads the store and prints,
so it must not import what a pass needs (the fetcher's HTTP clients, the
parsers, the pipeline): that is most of a second of start-up for a
command that runs in milliseconds once started (tests/test_startup.py).

It reads through a :class:`StatusSource`: on a SQLite file the light
reader (:class:`aggregator.store.lite.LiteReader`, the standard library's
sqlite3, no SQLAlchemy: see :func:`light_status`), elsewhere the store
(:class:`StoreSource`).  Both give the same :class:`StatusSnapshot`
(tests/test_light_paths.py compares them); a new section of ``status``
is a field here and a method on both sources.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from aggregator.policy.urls import redact_url

if TYPE_CHECKING:
    from rich.table import Table

    from aggregator.service.pipeline import FeedReport
    from aggregator.store import FeedState, Store
    from aggregator.store.rows import DaemonRow, PublisherRow

__all__ = [
    "Kind",
    "PublisherStatus",
    "StatusSnapshot",
    "StatusSource",
    "StoreSource",
    "daemons_document",
    "daemons_table",
    "light_status",
    "publisher_statuses",
    "publisher_table",
    "read_status",
    "show_daemons",
    "status_document",
    "status_rows",
    "status_table",
    "totals_line",
]

Kind = Literal["git", "command", "webhook"]


@dataclass(frozen=True, slots=True)
class PublisherStatus:
    """One publisher's state for status, /metrics and the operator's page.

    ``queue`` is what waits: unpushed commits for git, undelivered posts for
    a webhook, 0 for the command.  ``failing`` says the last round failed
    (the last error is newer than the last success).
    """

    name: str
    kind: Kind
    configured: bool
    last_run_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    queue: int

    @property
    def failing(self) -> bool:
        return self.last_error_at is not None and (
            self.last_success_at is None or self.last_error_at >= self.last_success_at
        )


def _kind(name: str) -> Kind:
    return "webhook" if name.startswith("webhook:") else "git" if name == "git" else "command"


def publisher_statuses(
    rows: Sequence[PublisherRow], configured: Sequence[str] | None = None
) -> list[PublisherStatus]:
    """The publishers of ``rows`` and ``configured`` (names in run order), then the rest by name."""
    by_name = {row.name: row for row in rows}
    names = list(configured) if configured is not None else []
    names += sorted(set(by_name) - set(names))
    states = []
    for name in names:
        row = by_name.get(name)
        kind = _kind(name)
        states.append(
            PublisherStatus(
                name=name,
                kind=kind,
                configured=configured is not None and name in configured,
                last_run_at=row.last_run_at if row else None,
                last_success_at=row.last_success_at if row else None,
                last_error=row.last_error if row else None,
                last_error_at=row.last_error_at if row else None,
                queue=(row.queue if kind == "webhook" else row.pending) if row else 0,
            )
        )
    return states


# -- reading -----------------------------------------------------------------------


class StatusSource(Protocol):
    """Where ``status`` reads from: the light reader or the store, the same answers."""

    def feeds(self) -> list[FeedState]: ...

    def lease_owners(self, *, now: datetime) -> set[str]: ...

    def publisher_rows(self) -> list[PublisherRow]: ...

    def fleet_daemons(self, *, now: datetime) -> list[DaemonRow]: ...


class StoreSource:
    """The store (SQLAlchemy; any backend) as a :class:`StatusSource`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def feeds(self) -> list[FeedState]:
        return self.store.feeds()

    def lease_owners(self, *, now: datetime) -> set[str]:
        return self.store.lease_owners(now=now)

    def publisher_rows(self) -> list[PublisherRow]:
        from aggregator.store.publish import publisher_rows

        return publisher_rows(self.store.engine)

    def fleet_daemons(self, *, now: datetime) -> list[DaemonRow]:
        from aggregator.store.fleet import fleet_daemons

        return fleet_daemons(self.store, now=now)


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    """Everything ``status`` shows, read at ``now``."""

    now: datetime
    feeds: list[FeedState]
    #: Lease owners (host:pid): the daemons polling now.
    daemons: list[str]
    publishers: list[PublisherStatus]
    #: The registered daemons (heartbeat rows), for the fleet's table.
    fleet: list[DaemonRow]


def read_status(source: StatusSource, *, now: datetime) -> StatusSnapshot:
    return StatusSnapshot(
        now=now,
        feeds=source.feeds(),
        daemons=sorted(source.lease_owners(now=now)),
        publishers=publisher_statuses(source.publisher_rows()),
        fleet=source.fleet_daemons(now=now),
    )


def light_status(database_url: str, *, now: datetime) -> StatusSnapshot | None:
    """The snapshot read without SQLAlchemy, or None where the light reader does not apply.

    None for anything but a SQLite file at this code's schema (PostgreSQL, no
    file, another revision) and for any error while reading: the caller then
    takes the store's path, which gives the same answer or says what is wrong.
    """
    from aggregator.store.lite import LiteReader, LiteUnavailable

    try:
        with LiteReader.open(database_url) as reader:
            return read_status(reader, now=now)
    except LiteUnavailable:
        return None


# -- printing ----------------------------------------------------------------------


def _when(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    seconds = (moment - now).total_seconds()
    span = abs(seconds)
    text = (
        f"{span:.0f}s"
        if span < 90
        else f"{span / 60:.0f}m"
        if span < 5400
        else f"{span / 3600:.1f}h"
    )
    return f"in {text}" if seconds > 0 else f"{text} ago"


def status_document(
    feeds: Sequence[FeedState], *, daemons: Sequence[str], now: datetime
) -> dict[str, Any]:
    """``aggregator status --json``: every feed row as plain JSON values, URLs redacted.

    Field names are FeedState's, so a script reads what the table shows
    under stable keys; times are ISO 8601 in UTC.
    """

    def plain(value: object) -> object:
        return value.isoformat() if isinstance(value, datetime) else value

    rows = []
    for feed in feeds:
        row = {f.name: plain(getattr(feed, f.name)) for f in dataclasses.fields(feed)}
        row["url"] = redact_url(feed.url)
        row["active"] = feed.active
        rows.append(row)
    return {"generated_at": now.isoformat(), "daemons": list(daemons), "feeds": rows}


def status_table(feeds: Sequence[FeedState], *, now: datetime | None = None) -> Table:
    from rich.table import Table  # only the CLI prints tables

    now = now or datetime.now(UTC)
    table = Table(title="feeds")
    for name in ("feed", "last poll", "result", "next poll", "errors", "posts", "blocked"):
        table.add_column(name)
    for f in feeds:
        if f.disabled_reason:
            result = f"disabled: {f.disabled_reason}"
        elif f.error_class:
            result = f"{f.error_class}: {f.last_error}"
        elif f.last_status is not None:
            result = f"ok {f.last_status}"
        else:
            result = "never polled"
        if not f.in_config:
            next_poll = "removed from config"
        elif not f.enabled:
            next_poll = "disabled in config"
        elif f.disabled_reason:
            next_poll = "-"
        else:
            next_poll = _when(f.next_check_at, now)
        table.add_row(
            f"{f.outlet} / {f.section}\n{redact_url(f.url)}",
            _when(f.last_checked_at, now),
            result,
            next_poll,
            str(f.error_streak),
            str(f.posts),
            str(f.blocked),
        )
    return table


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    seconds = max((now - moment).total_seconds(), 0)
    if seconds < 90:
        return f"{seconds:.0f}s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def publisher_table(states: Sequence[PublisherStatus], *, now: datetime) -> Table:
    """``aggregator status``'s publishers: last success, last error, queue."""
    from rich.table import Table  # only the CLI prints tables

    table = Table(title="publishers")
    for name in ("publisher", "last success", "last error", "queue"):
        table.add_column(name)
    for state in states:
        error = "-"
        if state.last_error_at is not None:
            error = f"{_ago(state.last_error_at, now)}: {state.last_error}"
            if not state.failing:
                error += " (since succeeded)"
        table.add_row(
            state.name + ("" if state.configured else " (not configured)"),
            _ago(state.last_success_at, now),
            error,
            str(state.queue),
        )
    return table


def status_rows(states: Sequence[PublisherStatus]) -> list[dict[str, object]]:
    """``aggregator status --json``'s ``publishers``: each state as plain JSON values."""

    def plain(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return [
        {
            "name": state.name,
            "kind": state.kind,
            "configured": state.configured,
            "last_run_at": plain(state.last_run_at),
            "last_success_at": plain(state.last_success_at),
            "last_error": state.last_error,
            "last_error_at": plain(state.last_error_at),
            "failing": state.failing,
            "queue": state.queue,
        }
        for state in states
    ]


def totals_line(reports: Sequence[FeedReport]) -> str:
    """One line a script can grep: ``5 new, 0 duplicate, 0 updated, 0 failed (2 feeds)``."""
    return (
        f"{sum(r.new for r in reports)} new, {sum(r.duplicate for r in reports)} duplicate, "
        f"{sum(r.updated for r in reports)} updated, {sum(r.failed for r in reports)} failed "
        f"({len(reports)} feeds)"
    )


def show_daemons(daemons: Sequence[DaemonRow], *, now: datetime) -> bool:
    """Whether ``status`` lists the daemons: a fleet (more than one), or any stale.

    One healthy daemon is the usual install, and the "polling now" line
    says enough about it.
    """
    if len(daemons) > 1:
        return True
    if not daemons:
        return False
    # Imported where used: policy.fleet is the claim planning's module, and
    # `status` over a single daemon (or none) needs nothing else of it.
    from aggregator.policy.fleet import STALE_AFTER

    return any(now - d.heartbeat_at > STALE_AFTER for d in daemons)


def daemons_table(daemons: Sequence[DaemonRow], *, now: datetime) -> Table:
    """The fleet: each daemon's host, pid, heartbeat age and leases held."""
    from rich.table import Table

    from aggregator.policy.fleet import STALE_AFTER

    table = Table(title="daemons")
    for name in ("host", "pid", "heartbeat", "leases", "started"):
        table.add_column(name)
    for d in daemons:
        age = (now - d.heartbeat_at).total_seconds()
        beat = f"{max(age, 0.0):.0f}s ago"
        if now - d.heartbeat_at > STALE_AFTER:
            beat += " (stale: presumed dead, its leases are handed out)"
        table.add_row(d.host, str(d.pid), beat, str(d.leases), _when(d.started_at, now))
    return table


def daemons_document(daemons: Sequence[DaemonRow], *, now: datetime) -> list[dict[str, Any]]:
    """The daemons for ``status --json``."""
    from aggregator.policy.fleet import STALE_AFTER

    return [
        {
            "id": d.owner,
            "host": d.host,
            "pid": d.pid,
            "started_at": d.started_at.isoformat(),
            "heartbeat_at": d.heartbeat_at.isoformat(),
            "heartbeat_age_s": round((now - d.heartbeat_at).total_seconds(), 1),
            "stale": now - d.heartbeat_at > STALE_AFTER,
            "leases": d.leases,
        }
        for d in daemons
    ]
