"""Retention: teams.event_retention_days (a team's events older than this are removed; none: kept), and the
indexes that find what is old enough: finished jobs, runs and webhook deliveries by team and finishing time,
events by team and creation time.

Revision ID: 0016
Revises: 0010
Create Date: 2026-12-05 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "ix_jobs_finished": ("jobs", ["team_id", "finished_at"]),
    "ix_runs_finished": ("runs", ["team_id", "finished_at"]),
    "ix_webhook_deliveries_finished": ("webhook_deliveries", ["team_id", "finished_at"]),
    "ix_events_team_created": ("events", ["team_id", "created_at"]),
}


def upgrade() -> None:
    op.add_column("teams", sa.Column("event_retention_days", sa.Integer(), nullable=True))
    for name, (table, columns) in INDEXES.items():
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, (table, _) in INDEXES.items():
        op.drop_index(name, table_name=table)
    op.execute("ALTER TABLE teams DROP COLUMN event_retention_days")  # in place on SQLite too (3.35+)
