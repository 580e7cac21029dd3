"""users.password_hash: the argon2 hash a user signs in to the console with (none: no console sign-in);
ix_processes_record: a record's processes (the console's record page)

Revision ID: 0010
Revises: 0007
Create Date: 2026-12-05 06:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("password_hash", sa.String(length=200), nullable=True))
    op.create_index("ix_processes_record", "processes", ["procedure_id", "record_id", "updated_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_processes_record", table_name="processes")
    # in place on SQLite too (3.35+): a copied table could not be dropped while api_keys refer to it
    op.execute("ALTER TABLE users DROP COLUMN password_hash")
