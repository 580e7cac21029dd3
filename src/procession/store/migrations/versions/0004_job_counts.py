"""jobs.invalid, jobs.succeeded, jobs.errored: a job's entry counts, kept as its chunks finish

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 00:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTS = {"invalid": "INVALID", "succeeded": "SUCCESS", "errored": "ERROR"}


def upgrade() -> None:
    for column in COUNTS:  # plain ALTER TABLE on both databases (no copy of jobs, which entries refer to)
        op.add_column("jobs", sa.Column(column, sa.Integer(), nullable=False, server_default="0"))
    for column, status in COUNTS.items():  # the jobs made before: counted once, from their entries
        op.execute(
            f"UPDATE jobs SET {column} = (SELECT count(*) FROM job_entries "
            f"WHERE job_entries.job_id = jobs.id AND job_entries.status = '{status}')"
        )


def downgrade() -> None:
    for column in COUNTS:
        op.drop_column("jobs", column)
