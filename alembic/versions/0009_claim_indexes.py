"""Claims that stay cheap at size: per-host indexes, a hosts row per host

Issue 17.  A claim now starts from the ``hosts`` table and reads each
eligible host's earliest due feeds through ``feeds (host, next_check_at)``,
and counts each host's leases through a partial index of the leased rows
only; the plain index on ``feeds.host`` is covered by the first and goes.
Every host of a stored feed gets its ``hosts`` row here (a claim no longer
inserts them; ``sync_feeds`` does for new feeds).

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("feeds") as batch:
        batch.drop_index("ix_feeds_host")
        batch.create_index("ix_feeds_host_next_check_at", ["host", "next_check_at"])
    op.create_index(
        "ix_feeds_leased_host",
        "feeds",
        ["host"],
        postgresql_where=sa.text("lease_owner IS NOT NULL"),
        sqlite_where=sa.text("lease_owner IS NOT NULL"),
    )
    op.execute(
        "INSERT INTO hosts (host) SELECT DISTINCT host FROM feeds WHERE host IS NOT NULL"
        " AND host NOT IN (SELECT host FROM hosts)"
    )


def downgrade() -> None:
    op.drop_index("ix_feeds_leased_host", table_name="feeds")
    with op.batch_alter_table("feeds") as batch:
        batch.drop_index("ix_feeds_host_next_check_at")
        batch.create_index("ix_feeds_host", ["host"])
