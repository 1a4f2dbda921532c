"""polls: each feed's poll history; the title search index

Issue 16 (the operator's page): ``polls`` keeps one row per poll (status,
duration, bytes, counts, error and the schedule's reason), pruned by the
daemon's housekeeping; the feed row only ever had the last outcome.
``poll_hours`` counts polls, failures and new posts per hour for the page's
24-hour chart (it starts empty: history before the upgrade is not known).
An index on feeds (group_name, outlet, section, id) serves the page's default sort.  Title
search uses the database's own full-text index: an FTS5 table kept by
triggers on SQLite, a GIN index on ``to_tsvector('simple', title)`` on
PostgreSQL (the statements are ``aggregator.store.models.search_index_ddl``,
shared with a new database's create_all).  The FTS table is filled from the
posts already stored.

Revision ID: 0007
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa

import aggregator.store.models
from aggregator.store.models import SEARCH_TABLE, search_index_ddl
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "polls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("feed_id", sa.Integer(), nullable=False),
        sa.Column("started_at", aggregator.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("new", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("error_class", sa.String(length=32), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("schedule", sa.Text(), nullable=True),
        sa.Column(
            "next_check_at", aggregator.store.models.UTCDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["feed_id"], ["feeds.id"], name=op.f("fk_polls_feed_id_feeds"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_polls")),
    )
    op.create_index(
        op.f("ix_polls_feed_id_started_at"), "polls", ["feed_id", "started_at"], unique=False
    )
    op.create_index(op.f("ix_polls_started_at"), "polls", ["started_at"], unique=False)
    op.create_table(
        "poll_hours",
        sa.Column("hour", aggregator.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("polls", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("new", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("hour", name=op.f("pk_poll_hours")),
    )
    op.create_index(
        op.f("ix_feeds_group_name_outlet_section_id"),
        "feeds",
        ["group_name", "outlet", "section", "id"],
        unique=False,
    )
    dialect = op.get_bind().dialect.name
    for statement in search_index_ddl(dialect):
        op.execute(statement)
    if dialect == "sqlite":
        op.execute(f"INSERT INTO {SEARCH_TABLE}({SEARCH_TABLE}) VALUES ('rebuild')")


def downgrade() -> None:
    for statement in search_index_ddl(op.get_bind().dialect.name, drop=True):
        op.execute(statement)
    op.drop_index(op.f("ix_feeds_group_name_outlet_section_id"), table_name="feeds")
    op.drop_table("poll_hours")
    op.drop_index(op.f("ix_polls_started_at"), table_name="polls")
    op.drop_index(op.f("ix_polls_feed_id_started_at"), table_name="polls")
    op.drop_table("polls")
