"""tasks: durable background work of every kind (bulk chunks are one), replacing job_chunks

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 17:00:00.000000
"""

from collections.abc import Sequence

import orjson
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True),
        sa.Column("team_id", sa.String(length=36), sa.ForeignKey("teams.id"), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("ref", sa.String(length=200), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.Column("args", JSON, nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("wake_at", sa.BigInteger(), nullable=False),
        sa.Column("lease_until", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("lane", sa.String(length=200), nullable=True),
        sa.Column("after_id", sa.BigInteger(), nullable=True),
        sa.Column("done_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "ref", "part", name="ux_tasks_ref"),
    )
    op.create_index("ix_tasks_pending", "tasks", ["status", "wake_at"])
    op.create_index("ix_tasks_lane", "tasks", ["lane", "status", "id"])
    # every chunk becomes a bulk.chunk task, in the order its job was submitted; its lane is its job's
    # procedure, and it waits for what it waited for (the chunks of its job up to after_chunk, or else the
    # earlier jobs of its procedure)
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT c.job_id, c.chunk_no, c.first_idx, c.end_idx, c.status, c.attempts, c.wake_at, "
            "c.applied_by, c.after_chunk, j.team_id, j.procedure_id, j.created_at "
            "FROM job_chunks c JOIN jobs j ON j.id = c.job_id ORDER BY j.created_at, j.id, c.chunk_no"
        )
    ).all()
    ids: dict[tuple[str, int], int] = {}
    first: dict[str, int] = {}
    tasks = []
    for n, row in enumerate(rows, start=1):
        ids[(row.job_id, row.chunk_no)] = n
        first.setdefault(row.job_id, n)
        after = first[row.job_id] - 1 if row.after_chunk is None else ids[(row.job_id, row.after_chunk)]
        tasks.append(
            {
                "id": n,
                "team_id": row.team_id,
                "kind": "bulk.chunk",
                "ref": row.job_id,
                "part": row.chunk_no,
                "args": orjson.dumps({"first": row.first_idx, "end": row.end_idx}).decode(),
                "status": "PENDING" if row.status == "PENDING" else "DONE",
                "attempts": row.attempts,
                "wake_at": row.wake_at,
                "lane": row.procedure_id,
                "after_id": after,
                "done_by": row.applied_by,
                "created_at": row.created_at,
            }
        )
    if tasks:
        cast = "CAST(:args AS jsonb)" if bind.dialect.name == "postgresql" else ":args"
        bind.execute(
            sa.text(
                "INSERT INTO tasks (id, team_id, kind, ref, part, args, status, attempts, wake_at, lane, "
                f"after_id, done_by, created_at) VALUES (:id, :team_id, :kind, :ref, :part, {cast}, :status, "
                ":attempts, :wake_at, :lane, :after_id, :done_by, :created_at)"
            ),
            tasks,
        )
        if bind.dialect.name == "postgresql":
            op.execute("SELECT setval(pg_get_serial_sequence('tasks', 'id'), (SELECT max(id) FROM tasks))")
    op.drop_index("ix_job_chunks_pending", table_name="job_chunks")
    op.drop_table("job_chunks")


def downgrade() -> None:
    op.create_table(
        "job_chunks",
        sa.Column("job_id", sa.String(length=36), sa.ForeignKey("jobs.id"), nullable=False),
        sa.Column("chunk_no", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("first_idx", sa.Integer(), nullable=False),
        sa.Column("end_idx", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("wake_at", sa.BigInteger(), nullable=False),
        sa.Column("applied_by", sa.String(length=200), nullable=True),
        sa.Column("after_chunk", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("job_id", "chunk_no"),
    )
    op.create_index("ix_job_chunks_pending", "job_chunks", ["status", "wake_at"])
    op.drop_index("ix_tasks_lane", table_name="tasks")
    op.drop_index("ix_tasks_pending", table_name="tasks")
    op.drop_table("tasks")
