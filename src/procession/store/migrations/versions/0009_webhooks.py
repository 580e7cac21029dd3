"""webhooks: subscriptions of endpoints to event types, their deliveries and the attempts of each

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-05 06:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ID = sa.String(length=36)


def _team() -> sa.Column:
    return sa.Column("team_id", ID, sa.ForeignKey("teams.id"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "webhooks",
        sa.Column("id", ID, nullable=False),
        _team(),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("event_types", JSON, nullable=False),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("timeout_ms", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=True),
        sa.Column("backoff_ms", sa.Integer(), nullable=False),
        sa.Column("failing_since", sa.BigInteger(), nullable=True),
        sa.Column("disabled_at", sa.BigInteger(), nullable=True),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_webhooks_team", "webhooks", ["team_id", "enabled"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", BIGID, autoincrement=True),
        _team(),
        sa.Column("webhook_id", ID, nullable=False),
        sa.Column("subject", sa.String(length=40), nullable=False),
        sa.Column("event_key", sa.String(length=80), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("message_id", sa.String(length=40), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("wake_at", sa.BigInteger(), nullable=False),
        sa.Column("lease_until", sa.BigInteger(), nullable=True),
        sa.Column("held_by", sa.String(length=100), nullable=True),
        sa.Column("task_ref", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("webhook_id", "subject", "event_key", name="ux_webhook_deliveries_event"),
    )
    op.create_index(
        "ix_webhook_deliveries_subject", "webhook_deliveries", ["team_id", "subject", "webhook_id", "id"]
    )
    op.create_index("ix_webhook_deliveries_webhook", "webhook_deliveries", ["team_id", "webhook_id", "id"])
    op.create_index("ix_webhook_deliveries_task", "webhook_deliveries", ["task_ref", "id"])
    op.create_table(
        "webhook_attempts",
        sa.Column("id", BIGID, autoincrement=True),
        _team(),
        sa.Column("delivery_id", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.String(length=12), nullable=False),
        sa.Column("request", JSON, nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("excerpt", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_webhook_attempts_delivery", "webhook_attempts", ["delivery_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_attempts_delivery", table_name="webhook_attempts")
    op.drop_table("webhook_attempts")
    for index in (
        "ix_webhook_deliveries_task",
        "ix_webhook_deliveries_webhook",
        "ix_webhook_deliveries_subject",
    ):
        op.drop_index(index, table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_webhooks_team", table_name="webhooks")
    op.drop_table("webhooks")
