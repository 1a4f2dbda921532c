"""export ledger

Adds ``exports``: which revision of which post was written into which export
directory (issue 13).  The pipeline commits posts before it writes their
files, so without it a crash or a full or read-only export directory left
stored posts that no later pass would write.  The table starts empty: the
first pass after the upgrade compares every stored post with its file (files
already there with the same bytes are not rewritten) and records them.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa

import aggregator.store.models
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "exports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("post_id", sa.Integer(), nullable=True),
        sa.Column("directory", sa.Text(), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column(
            "post_updated_at", aggregator.store.models.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("written_at", aggregator.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["post_id"], ["posts.id"], name=op.f("fk_exports_post_id_posts"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exports")),
        sa.UniqueConstraint("directory", "post_id", name=op.f("uq_exports_directory_post_id")),
    )
    op.create_index(op.f("ix_exports_post_id"), "exports", ["post_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_exports_post_id"), table_name="exports")
    op.drop_table("exports")
