"""automations: their saved versions, runs and the attempts of their steps

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 21:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _team() -> sa.Column:
    return sa.Column("team_id", sa.String(length=36), sa.ForeignKey("teams.id"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "automation_versions",
        sa.Column("automation_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        _team(),
        sa.Column("procedure_id", sa.String(length=36), nullable=False),
        sa.Column("definition", JSON, nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("automation_id", "version"),
    )
    op.create_table(
        "runs",
        sa.Column("id", BIGID, autoincrement=True),
        _team(),
        sa.Column("automation_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("procedure_id", sa.String(length=36), nullable=False),
        sa.Column("process_id", sa.String(length=36), nullable=False),
        sa.Column("trigger_key", sa.String(length=40), nullable=True),
        sa.Column("event", JSON, nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("outputs", JSON, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("wake_at", sa.BigInteger(), nullable=False),
        sa.Column("lease_until", sa.BigInteger(), nullable=True),
        sa.Column("held_by", sa.String(length=100), nullable=True),
        sa.Column("task_ref", sa.String(length=40), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=True),
        sa.Column("job_idx", sa.Integer(), nullable=True),
        sa.Column("rerun_of", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=True),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("automation_id", "process_id", "trigger_key", name="ux_runs_trigger"),
    )
    op.create_index("ix_runs_process", "runs", ["team_id", "process_id", "id"])
    op.create_index("ix_runs_task", "runs", ["task_ref", "id"])
    op.create_index("ix_runs_automation", "runs", ["team_id", "automation_id", "id"])
    op.create_index("ix_runs_job", "runs", ["job_id", "job_idx"])
    op.create_table(
        "run_attempts",
        sa.Column("id", BIGID, autoincrement=True),
        _team(),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=12), nullable=False),
        sa.Column("request", JSON, nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("excerpt", sa.Text(), nullable=True),
        sa.Column("output", JSON, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_run_attempts_run", "run_attempts", ["run_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_run_attempts_run", table_name="run_attempts")
    op.drop_table("run_attempts")
    for index in ("ix_runs_job", "ix_runs_automation", "ix_runs_task", "ix_runs_process"):
        op.drop_index(index, table_name="runs")
    op.drop_table("runs")
    op.drop_table("automation_versions")
