"""connectors (a team's accounts at external services, credentials sealed) and links (what steps made there)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 06:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
ID = sa.String(length=36)


def _team() -> sa.Column:
    return sa.Column("team_id", ID, sa.ForeignKey("teams.id"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "connectors",
        sa.Column("id", ID, nullable=False),
        _team(),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("base_url", sa.String(length=500), nullable=False),
        sa.Column("settings", JSON, nullable=False),
        sa.Column("credentials", sa.Text(), nullable=True),
        sa.Column("credential_fields", JSON, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("team_id", "name", name="ux_connectors_name"),
    )
    op.create_table(
        "links",
        _team(),
        sa.Column("process_id", ID, nullable=False),
        sa.Column("connector_id", ID, nullable=False),
        sa.Column("object_type", sa.String(length=300), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=True),
        sa.Column("first_synced_at", sa.BigInteger(), nullable=False),
        sa.Column("last_synced_at", sa.BigInteger(), nullable=False),
        sa.Column("automation_id", ID, nullable=True),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("team_id", "process_id", "connector_id", "object_type"),
    )
    op.create_index("ix_links_external", "links", ["team_id", "connector_id", "external_id"])


def downgrade() -> None:
    op.drop_index("ix_links_external", table_name="links")
    op.drop_table("links")
    op.drop_table("connectors")
