"""job_chunks.after_chunk: a chunk naming processes that earlier chunks name waits for them

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 16:55:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("job_chunks") as batch:
        batch.add_column(sa.Column("after_chunk", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_chunks") as batch:
        batch.drop_column("after_chunk")
