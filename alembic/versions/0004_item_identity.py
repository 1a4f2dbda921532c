"""item identity: former content hashes indexed, route fragments in link keys

Issue 13.  An item whose content is an *earlier* version of a stored post
(another feed still carrying what the first has since edited) is that
post's duplicate: ``post_revisions.content_hash`` is looked up on every
ingest of new items, so it gets an index.  Canonical links now keep the
fragments that route a single-page site (``#/post/12``, ``#!/post/12``):
the ``link_key`` of stored entries with such links is computed again.

Revision ID: 0004
Revises: 0003 (re-chained after 0003 at merge)
"""

from collections.abc import Sequence

import sqlalchemy as sa

from aggregator.policy.dedup import canonical_link
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LINK_KEY_MAX = 2048
_BATCH = 1000


def upgrade() -> None:
    op.create_index(
        "ix_post_revisions_content_hash", "post_revisions", ["content_hash"], unique=False
    )
    entries = sa.table(
        "entries", sa.column("id", sa.Integer), sa.column("link", sa.Text), sa.column("link_key")
    )
    bind = op.get_bind()
    last_id = 0
    while True:
        rows = bind.execute(
            sa.select(entries.c.id, entries.c.link)
            .where(
                entries.c.id > last_id,
                sa.or_(entries.c.link.contains("#/"), entries.c.link.contains("#!")),
            )
            .order_by(entries.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        for entry_id, link in rows:
            key = canonical_link(link)
            bind.execute(
                sa.update(entries)
                .where(entries.c.id == entry_id)
                .values(link_key=key if key is not None and len(key) <= _LINK_KEY_MAX else None)
            )
        last_id = rows[-1][0]


def downgrade() -> None:
    op.drop_index("ix_post_revisions_content_hash", table_name="post_revisions")
