"""users: the primary key is (team_id, id), so an id another team chose is free in this one; api_keys name
their user by (team_id, user_id)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(length=36)
USER_COLUMNS = "id, team_id, username, name, role, created_at"
KEY_COLUMNS = "id, team_id, key_hash, prefix, role, user_id, label, created_at, revoked_at"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("api_keys_user_id_fkey", "api_keys", type_="foreignkey")
        op.drop_constraint("users_pkey", "users", type_="primary")
        op.create_primary_key("users_pkey", "users", ["team_id", "id"])
        op.create_foreign_key(
            "api_keys_team_id_user_id_fkey", "api_keys", "users", ["team_id", "user_id"], ["team_id", "id"]
        )
    else:
        _rebuild(per_team=True)


def downgrade() -> None:
    """Back to ids unique across teams: fails if two teams have a user of the same id."""
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("api_keys_team_id_user_id_fkey", "api_keys", type_="foreignkey")
        op.drop_constraint("users_pkey", "users", type_="primary")
        op.create_primary_key("users_pkey", "users", ["id"])
        op.create_foreign_key("api_keys_user_id_fkey", "api_keys", "users", ["user_id"], ["id"])
    else:
        _rebuild(per_team=False)


def _rebuild(*, per_team: bool) -> None:
    """SQLite, which cannot change a primary key: both tables built anew and copied, inside the migration's
    transaction (foreign keys stay on: the new keys refer to the new users, whose rename to ``users`` SQLite
    carries into them, and the old tables are dropped child first)."""
    user_key = ["team_id", "id"] if per_team else ["id"]
    op.create_table(
        "users_new",
        sa.Column("id", ID, nullable=False),
        sa.Column("team_id", ID, nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), server_default="", nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"]),
        sa.PrimaryKeyConstraint(*user_key),
        sa.UniqueConstraint("team_id", "username"),
    )
    op.execute(f"INSERT INTO users_new ({USER_COLUMNS}) SELECT {USER_COLUMNS} FROM users")
    op.create_table(
        "api_keys_new",
        sa.Column("id", ID, nullable=False),
        sa.Column("team_id", ID, nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=12), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("user_id", ID, nullable=True),
        sa.Column("label", sa.String(length=200), server_default="", nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"]),
        sa.ForeignKeyConstraint(
            ["team_id", "user_id"] if per_team else ["user_id"], [f"users_new.{c}" for c in user_key]
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    op.execute(f"INSERT INTO api_keys_new ({KEY_COLUMNS}) SELECT {KEY_COLUMNS} FROM api_keys")
    op.drop_table("api_keys")
    op.drop_table("users")
    op.rename_table("users_new", "users")
    op.rename_table("api_keys_new", "api_keys")
