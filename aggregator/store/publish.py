"""Publishing's tables: each publisher's state, and the webhook outbox (issue 16).

Functions over a store's engine, each one transaction.  The service layer
(:mod:`aggregator.service.publish`) decides when to publish; this module only
remembers what was done, so a restart neither loses nor repeats anything:

* :func:`enqueue_new_posts` turns the export ledger's new rows (files written
  into the export directory) into outbox rows for one webhook.  It reads the
  ledger rather than being called by the exporter, so every way a file gets
  written -- a daemon poll, the catch-up, ``aggregator fetch`` from cron --
  queues its post, and queueing twice is harmless (one row per webhook and
  post, enforced by a unique constraint);
* :func:`due_deliveries`, :func:`delivered` and :func:`failed` work the
  outbox: a row is marked delivered only after a 2xx answer, so delivery is
  at least once; the receiver de-duplicates by the ``Idempotency-Key``;
* :func:`record_run` and :func:`publisher_rows` keep and read each
  publisher's last success, last error and queue length.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.engine import Connection, Engine

from aggregator.store import models as m
from aggregator.store.rows import PublisherRow

__all__ = [
    "LOOKBACK_ROWS",
    "Delivery",
    "PublisherRow",
    "delivered",
    "due_deliveries",
    "enqueue_new_posts",
    "failed",
    "prune_delivered",
    "publisher_rows",
    "record_run",
]

_PUBLISHERS = cast(Table, m.PublisherState.__table__)
_DELIVERIES = cast(Table, m.WebhookDelivery.__table__)
_EXPORTS = cast(Table, m.ExportedFile.__table__)
_POSTS = cast(Table, m.Post.__table__)

#: Ledger rows re-read behind a webhook's cursor.  On PostgreSQL two
#: daemons' transactions can commit their export rows out of id order, so a
#: row with an id below the cursor may appear after the cursor moved past
#: it; looking back this many ids catches it (the unique constraint keeps the
#: rows already queued from being queued again).
LOOKBACK_ROWS = 2000

#: How long a delivered outbox row is kept after its 2xx.  Only rows the
#: cursor has left behind by more than the lookback can go: for them the
#: unique (webhook, post_id) row is no longer what stops a second delivery.
KEEP_DELIVERED = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One queued POST: the exact body, its idempotency key, how often it failed."""

    id: int
    webhook: str
    post_id: int | None
    key: str
    body: bytes
    attempts: int


def _insert(conn: Connection) -> Any:
    """The dialect's INSERT with ON CONFLICT (imported here: ``status`` reads only)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert

        return insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def _ensure(conn: Connection, name: str) -> None:
    """The publisher's row, created if missing (another process may create it too)."""
    statement = _insert(conn)(_PUBLISHERS).values(name=name, pending=0)
    conn.execute(statement.on_conflict_do_nothing(index_elements=[_PUBLISHERS.c.name]))


def body_of(row: Any, file_name: str) -> dict[str, Any]:
    """The JSON document sent for one post (README "Publishing" lists its fields)."""
    date = row.date.isoformat() if row.date is not None else None
    return {
        "event": "post",
        "id": row.id,
        "title": row.title,
        "categories": [row.group_name, row.outlet, row.section],
        "date": date,
        "link": row.link,
        "file": file_name,
        "slug": row.slug,
        "content_hash": row.content_hash,
    }


def enqueue_new_posts(
    engine: Engine,
    webhook: str,
    directory: Path,
    *,
    now: datetime,
    lookback: int = LOOKBACK_ROWS,
    limit: int = 5000,
) -> int:
    """Queue the posts newly exported into ``directory`` for ``webhook``; how many.

    "New" means a ledger row added after the webhook was first seen: the
    first call only places the cursor at the newest row, so configuring a
    webhook does not send the whole archive.  A post whose file is rewritten
    (a new revision) keeps its ledger row and is not sent again.  At most
    ``limit`` rows are queued per call (the rest on the next).
    """
    from aggregator.store.exports import directory_key

    key = directory_key(directory)
    exports, posts, outbox = _EXPORTS, _POSTS, _DELIVERIES
    with engine.begin() as conn:
        found = conn.execute(
            select(_PUBLISHERS.c.start, _PUBLISHERS.c.cursor).where(_PUBLISHERS.c.name == webhook)
        ).first()
        if found is None or found.cursor is None:
            newest = conn.scalar(select(func.max(exports.c.id)).where(exports.c.directory == key))
            _ensure(conn, webhook)
            conn.execute(
                update(_PUBLISHERS)
                .where(_PUBLISHERS.c.name == webhook, _PUBLISHERS.c.cursor.is_(None))
                .values(start=newest or 0, cursor=newest or 0)
            )
            return 0
        start, cursor = int(found.start or 0), int(found.cursor)
        queued = (
            select(outbox.c.id)
            .where(outbox.c.webhook == webhook, outbox.c.post_id == exports.c.post_id)
            .exists()
        )
        rows = conn.execute(
            select(
                exports.c.id.label("export_id"),
                exports.c.file_name,
                posts.c.id,
                posts.c.title,
                posts.c.group_name,
                posts.c.outlet,
                posts.c.section,
                posts.c.date,
                posts.c.link,
                posts.c.slug,
                posts.c.content_hash,
            )
            .join(posts, posts.c.id == exports.c.post_id)
            .where(
                exports.c.directory == key,
                exports.c.id > max(start, cursor - lookback),
                posts.c.blocked.is_(None),
                ~queued,
            )
            .order_by(exports.c.id)
            .limit(limit)
        ).all()
        if rows:
            values = [
                {
                    "webhook": webhook,
                    "post_id": row.id,
                    "key": uuid.uuid4().hex,
                    "body": json.dumps(
                        body_of(row, row.file_name), ensure_ascii=False, separators=(",", ":")
                    ),
                    "created_at": now,
                    "attempts": 0,
                    "next_attempt_at": now,
                }
                for row in rows
            ]
            statement = _insert(conn)(outbox).on_conflict_do_nothing(
                index_elements=[outbox.c.webhook, outbox.c.post_id]
            )
            conn.execute(statement, values)
        newest = max([cursor, *(row.export_id for row in rows)])
        if newest != cursor:
            conn.execute(
                update(_PUBLISHERS)
                .where(_PUBLISHERS.c.name == webhook, _PUBLISHERS.c.cursor < newest)
                .values(cursor=newest)
            )
        return len(rows)


def prune_delivered(
    engine: Engine,
    webhook: str,
    directory: Path,
    *,
    now: datetime,
    keep: timedelta = KEEP_DELIVERED,
    lookback: int = LOOKBACK_ROWS,
) -> int:
    """Delete ``webhook``'s delivered rows older than ``keep`` that cannot be queued again.

    Without this the outbox grows by one row per post for ever.  A delivered
    row is what keeps :func:`enqueue_new_posts` from queueing its post a
    second time, so it stays while its post's ledger row is still inside the
    window that function re-reads (ids above ``cursor - lookback``); older
    rows are history only.  Undelivered rows are never deleted.  Returns how
    many rows went.
    """
    from aggregator.store.exports import directory_key

    exports, outbox = _EXPORTS, _DELIVERIES
    with engine.begin() as conn:
        cursor = conn.scalar(select(_PUBLISHERS.c.cursor).where(_PUBLISHERS.c.name == webhook))
        if cursor is None:
            return 0
        still_in_window = (
            select(exports.c.id)
            .where(
                exports.c.directory == directory_key(directory),
                exports.c.post_id == outbox.c.post_id,
                exports.c.id > int(cursor) - lookback,
            )
            .exists()
        )
        result = conn.execute(
            delete(outbox).where(
                outbox.c.webhook == webhook,
                outbox.c.delivered_at.is_not(None),
                outbox.c.delivered_at < now - keep,
                ~still_in_window,
            )
        )
        return int(result.rowcount or 0)


def due_deliveries(
    engine: Engine, webhook: str, *, now: datetime, limit: int = 100
) -> list[Delivery]:
    """Undelivered rows of ``webhook`` whose time has come, oldest first."""
    outbox = _DELIVERIES
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                outbox.c.id,
                outbox.c.webhook,
                outbox.c.post_id,
                outbox.c.key,
                outbox.c.body,
                outbox.c.attempts,
            )
            .where(
                outbox.c.webhook == webhook,
                outbox.c.delivered_at.is_(None),
                outbox.c.next_attempt_at <= now,
            )
            .order_by(outbox.c.next_attempt_at, outbox.c.id)
            .limit(limit)
        ).all()
    return [
        Delivery(r.id, r.webhook, r.post_id, r.key, r.body.encode("utf-8"), r.attempts)
        for r in rows
    ]


def delivered(engine: Engine, delivery_id: int, *, now: datetime, status: int) -> None:
    """The receiver answered 2xx: the row is done (kept, for the record)."""
    with engine.begin() as conn:
        conn.execute(
            update(_DELIVERIES)
            .where(_DELIVERIES.c.id == delivery_id)
            .values(
                delivered_at=now,
                last_status=status,
                last_error=None,
                attempts=_DELIVERIES.c.attempts + 1,
            )
        )


def failed(
    engine: Engine,
    delivery_id: int,
    *,
    now: datetime,
    retry_in: timedelta,
    error: str,
    status: int | None = None,
) -> None:
    """A delivery failed: count it and set when it is tried again."""
    with engine.begin() as conn:
        conn.execute(
            update(_DELIVERIES)
            .where(_DELIVERIES.c.id == delivery_id)
            .values(
                attempts=_DELIVERIES.c.attempts + 1,
                next_attempt_at=now + retry_in,
                last_status=status,
                last_error=error[:2000],
            )
        )


def next_attempt(engine: Engine, webhook: str) -> datetime | None:
    """When the earliest undelivered row of ``webhook`` is due (None: queue empty)."""
    outbox = _DELIVERIES
    with engine.connect() as conn:
        return cast(
            datetime | None,
            conn.scalar(
                select(func.min(outbox.c.next_attempt_at)).where(
                    outbox.c.webhook == webhook, outbox.c.delivered_at.is_(None)
                )
            ),
        )


def record_run(
    engine: Engine,
    name: str,
    *,
    now: datetime,
    error: str | None = None,
    pending: int = 0,
    success: bool = True,
) -> None:
    """Note one publisher's round: a success (``error`` None) or the error text.

    ``success`` False with no error is a round where nothing was tried (a
    webhook whose queue waits out its back-off): only the time and the
    pending count change.
    """
    values: dict[str, Any] = {"last_run_at": now, "pending": pending}
    if error is None and not success:
        pass
    elif error is None:
        values["last_success_at"] = now
    else:
        values["last_error"] = error[:2000]
        values["last_error_at"] = now
    with engine.begin() as conn:
        _ensure(conn, name)
        conn.execute(update(_PUBLISHERS).where(_PUBLISHERS.c.name == name).values(**values))


def publisher_rows(engine: Engine, names: Sequence[str] | None = None) -> list[PublisherRow]:
    """Every publisher's stored state (or only ``names``), by name, with queue lengths."""
    p, outbox = _PUBLISHERS, _DELIVERIES
    queues = (
        select(outbox.c.webhook, func.count().label("queue"))
        .where(outbox.c.delivered_at.is_(None))
        .group_by(outbox.c.webhook)
        .subquery()
    )
    query = (
        select(
            p.c.name,
            p.c.last_run_at,
            p.c.last_success_at,
            p.c.last_error,
            p.c.last_error_at,
            p.c.pending,
            func.coalesce(queues.c.queue, 0),
        )
        .outerjoin(queues, queues.c.webhook == p.c.name)
        .order_by(p.c.name)
    )
    if names is not None:
        query = query.where(p.c.name.in_(list(names)))
    with engine.connect() as conn:
        return [PublisherRow(*row) for row in conn.execute(query)]
