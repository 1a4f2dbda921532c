"""publishing: the publishers' state and the webhook outbox

Issue 16: ``publishers`` keeps each publisher's last success and error (and a
webhook's cursor into ``exports``), ``webhook_deliveries`` is the outbox, one
row per (webhook, post), so a restart neither loses nor repeats a delivery.
Both start empty: a webhook starts from the posts exported after it was
first seen.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa

import aggregator.store.models
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    moment = aggregator.store.models.UTCDateTime(timezone=True)
    op.create_table(
        "publishers",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("start", sa.Integer(), nullable=True),
        sa.Column("cursor", sa.Integer(), nullable=True),
        sa.Column("last_run_at", moment, nullable=True),
        sa.Column("last_success_at", moment, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", moment, nullable=True),
        sa.Column("pending", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_publishers")),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("webhook", sa.String(length=128), nullable=False),
        sa.Column("post_id", sa.Integer(), nullable=True),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", moment, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", moment, nullable=False),
        sa.Column("delivered_at", moment, nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["post_id"],
            ["posts.id"],
            name=op.f("fk_webhook_deliveries_post_id_posts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("key", name=op.f("uq_webhook_deliveries_key")),
        sa.UniqueConstraint(
            "webhook", "post_id", name=op.f("uq_webhook_deliveries_webhook_post_id")
        ),
    )
    op.create_index(
        op.f("ix_webhook_deliveries_webhook_delivered_at_next_attempt_at"),
        "webhook_deliveries",
        ["webhook", "delivered_at", "next_attempt_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_webhook_deliveries_post_id"), "webhook_deliveries", ["post_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_webhook_deliveries_post_id"), table_name="webhook_deliveries")
    op.drop_index(
        op.f("ix_webhook_deliveries_webhook_delivered_at_next_attempt_at"),
        table_name="webhook_deliveries",
    )
    op.drop_table("webhook_deliveries")
    op.drop_table("publishers")
