"""A fleet on one database: heartbeats, fencing tokens, per-host budgets

Issue 17.  ``daemons`` holds one row per running ``aggregator run`` with its
heartbeat, so the leases of a daemon killed anywhere are handed back within
a minute; ``feeds.lease_token`` is the fencing token a poll's writes are
checked against; ``feeds.host`` and ``hosts`` keep each host's concurrency
and spacing across the whole fleet.  Existing rows get their host from their
URL; the new tables start empty.

Revision ID: 0008
Revises: 0005
"""

from collections.abc import Sequence
from urllib.parse import urlsplit

import sqlalchemy as sa

import aggregator.store.models
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _host(url: str) -> str | None:
    try:
        return (urlsplit(url).hostname or "").lower() or None
    except ValueError:
        return None


def upgrade() -> None:
    with op.batch_alter_table("feeds") as batch:
        batch.add_column(sa.Column("lease_token", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("host", sa.String(255), nullable=True))
        batch.create_index("ix_feeds_host", ["host"])
    feeds = sa.table("feeds", sa.column("id", sa.Integer), sa.column("url", sa.String))
    connection = op.get_bind()
    rows = [
        {"b_id": fid, "b_host": _host(url)}
        for fid, url in connection.execute(sa.select(feeds.c.id, feeds.c.url))
    ]
    if rows:
        connection.execute(sa.text("UPDATE feeds SET host = :b_host WHERE id = :b_id"), rows)
    op.create_table(
        "daemons",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", aggregator.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "heartbeat_at", aggregator.store.models.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name="pk_daemons"),
    )
    op.create_table(
        "hosts",
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column(
            "next_start_at", aggregator.store.models.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("holder", sa.String(128), nullable=True),
        sa.Column(
            "held_until", aggregator.store.models.UTCDateTime(timezone=True), nullable=True
        ),
        sa.PrimaryKeyConstraint("host", name="pk_hosts"),
    )


def downgrade() -> None:
    op.drop_table("hosts")
    op.drop_table("daemons")
    with op.batch_alter_table("feeds") as batch:
        batch.drop_index("ix_feeds_host")
        batch.drop_column("host")
        batch.drop_column("lease_token")
