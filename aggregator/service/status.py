"""What ``aggregator status`` prints: the feed table and its JSON document.

Apart from the runner on purpose: ``status`` reads the store and prints,
so it must not import what a pass needs (the fetcher's HTTP clients, the
parsers, the pipeline): that is most of a second of start-up for a
command that runs in milliseconds once started (tests/test_startup.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aggregator.policy.fleet import STALE_AFTER
from aggregator.policy.urls import redact_url

if TYPE_CHECKING:
    from rich.table import Table

    from aggregator.store import FeedState
    from aggregator.store.fleet import DaemonRow

__all__ = ["daemons_document", "daemons_table", "show_daemons", "status_document", "status_table"]


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


def show_daemons(daemons: Sequence[DaemonRow], *, now: datetime) -> bool:
    """Whether ``status`` lists the daemons: a fleet (more than one), or any stale.

    One healthy daemon is the usual install, and the "polling now" line
    says enough about it.
    """
    return len(daemons) > 1 or any(now - d.heartbeat_at > STALE_AFTER for d in daemons)


def daemons_table(daemons: Sequence[DaemonRow], *, now: datetime) -> Table:
    """The fleet: each daemon's host, pid, heartbeat age and leases held."""
    from rich.table import Table

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
