"""posts.layout: how a replayed archive file was spelled

Issue 13: replay must write every file the original generator wrote back byte
for byte.  ``posts.layout`` keeps what such a file spelled differently from
the canonical seed layout (``aggregator.hexo.post.Layout.as_dict``); it is NULL for
fetched posts and for replayed files already in the canonical layout, which is
what every existing row is.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("posts", sa.Column("layout", sa.JSON(), nullable=True))


def downgrade() -> None:
    # SQLite before 3.35 cannot drop a column in place.
    with op.batch_alter_table("posts") as batch:
        batch.drop_column("layout")
