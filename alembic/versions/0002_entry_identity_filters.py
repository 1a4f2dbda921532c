"""entry identity, filters and revision dates

Adds what issue 9 needs: ``entries.link_key`` (the canonical link, indexed
per feed, so an item whose GUID or key changed is found again instead of
stored twice), ``entries.blocked`` / ``posts.blocked`` (filter verdicts) and
``posts.revised_at`` (the ``updated:`` line of a revised post).

Existing entries get their ``link_key`` computed here, so items stored before
this migration are matched too.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa

import aggregator.store.models
from aggregator.policy.dedup import canonical_link
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LINK_KEY_MAX = 2048
_BATCH = 1000


def upgrade() -> None:
    op.add_column("entries", sa.Column("link_key", sa.String(length=2048), nullable=True))
    op.add_column("entries", sa.Column("blocked", sa.Text(), nullable=True))
    op.add_column(
        "posts",
        sa.Column("revised_at", aggregator.store.models.UTCDateTime(timezone=True), nullable=True),
    )
    op.add_column("posts", sa.Column("blocked", sa.Text(), nullable=True))
    op.create_index("ix_entries_feed_id_link_key", "entries", ["feed_id", "link_key"], unique=False)

    entries = sa.table(
        "entries", sa.column("id", sa.Integer), sa.column("link", sa.Text), sa.column("link_key")
    )
    bind = op.get_bind()
    last_id = 0
    while True:
        rows = bind.execute(
            sa.select(entries.c.id, entries.c.link)
            .where(entries.c.id > last_id, entries.c.link.is_not(None))
            .order_by(entries.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        for entry_id, link in rows:
            key = canonical_link(link)
            if key is not None and len(key) <= _LINK_KEY_MAX:
                bind.execute(
                    sa.update(entries).where(entries.c.id == entry_id).values(link_key=key)
                )
        last_id = rows[-1][0]


def downgrade() -> None:
    op.drop_index("ix_entries_feed_id_link_key", table_name="entries")
    with op.batch_alter_table("posts") as batch:
        batch.drop_column("blocked")
        batch.drop_column("revised_at")
    with op.batch_alter_table("entries") as batch:
        batch.drop_column("blocked")
        batch.drop_column("link_key")
