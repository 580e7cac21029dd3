"""PostgreSQL: a sequence per generated-id counter, so creates do not queue on the counter's row

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 17:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _name(attribute_id: str) -> str:
    return "counter_" + attribute_id.replace("-", "")  # as store.repositories.counter_sequence


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for attribute_id, value in bind.execute(sa.text("SELECT attribute_id, value FROM counters")):
        start = value + 1
        op.execute(
            f'CREATE SEQUENCE IF NOT EXISTS "{_name(attribute_id)}" MINVALUE {min(start, 1)} START {start}'
        )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for (attribute_id,) in bind.execute(sa.text("SELECT attribute_id FROM counters")):
        name = _name(attribute_id)
        op.execute(
            f"UPDATE counters SET value = (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END "
            f"FROM \"{name}\") WHERE attribute_id = '{attribute_id}'"
        )
        op.execute(f'DROP SEQUENCE IF EXISTS "{name}"')
