"""Text search: the words of processes' and records' string values, kept by the database in the transaction
that writes the row (``store.words``): GIN indexes on PostgreSQL; on SQLite FTS5 tables, and triggers that
note the rows whose words changed, written into them at commit.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 09:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

from procession.store.words import settle

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = {"processes": "process_words", "records": "record_words"}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"CREATE INDEX ix_{table}_words ON {table} USING gin (to_tsvector('simple', data))")
        return
    for table, fts in TABLES.items():
        op.execute(f"CREATE VIRTUAL TABLE {fts} USING fts5(words, content='', tokenize='unicode61')")
        # rows whose words changed in the open transaction, each with the document whose words the FTS5
        # table holds for it (``indexed``: whether it holds any): written into it at commit (``words.settle``)
        op.execute(
            f"CREATE TABLE {fts}_pending (rowid INTEGER PRIMARY KEY, indexed INTEGER NOT NULL, old TEXT)"
        )
        op.execute(
            f"INSERT INTO {fts}_pending SELECT rowid, 0, NULL FROM {table}"
        )  # every row, settled below
        op.execute(
            f"CREATE TRIGGER {fts}_insert AFTER INSERT ON {table} BEGIN "
            f"INSERT OR IGNORE INTO {fts}_pending VALUES (new.rowid, 0, NULL); END"
        )
        op.execute(
            f"CREATE TRIGGER {fts}_update AFTER UPDATE OF data ON {table} WHEN old.data IS NOT new.data BEGIN "
            f"INSERT OR IGNORE INTO {fts}_pending VALUES (old.rowid, 1, old.data); END"
        )
        op.execute(
            f"CREATE TRIGGER {fts}_delete AFTER DELETE ON {table} BEGIN "
            f"INSERT OR IGNORE INTO {fts}_pending VALUES (old.rowid, 1, old.data); END"
        )
    settle(op.get_bind().connection.driver_connection)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP INDEX ix_{table}_words")
        return
    for fts in TABLES.values():
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER {fts}_{event}")
        op.execute(f"DROP TABLE {fts}_pending")
        op.execute(f"DROP TABLE {fts}")
