"""Text search: the words of processes' and records' string values, kept by the database in the statement
that writes the row (``store.words``): GIN indexes on PostgreSQL, FTS5 tables kept by triggers on SQLite.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 09:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = {"processes": "process_words", "records": "record_words"}
# SQLite: the words of a row's ``data``, its string values (at any depth) joined by spaces
WORDS = "(SELECT group_concat(value, ' ') FROM json_tree({0}.data) WHERE type = 'text')"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"CREATE INDEX ix_{table}_words ON {table} USING gin (to_tsvector('simple', data))")
        return
    for table, fts in TABLES.items():
        new, old = WORDS.format("new"), WORDS.format("old")
        op.execute(f"CREATE VIRTUAL TABLE {fts} USING fts5(words, content='', tokenize='unicode61')")
        op.execute(f"INSERT INTO {fts} (rowid, words) SELECT rowid, {WORDS.format(table)} FROM {table}")
        op.execute(
            f"CREATE TRIGGER {fts}_insert AFTER INSERT ON {table} BEGIN "
            f"INSERT INTO {fts} (rowid, words) VALUES (new.rowid, {new}); END"
        )
        op.execute(
            f"CREATE TRIGGER {fts}_update AFTER UPDATE OF data ON {table} WHEN {old} IS NOT {new} BEGIN "
            f"INSERT INTO {fts} ({fts}, rowid, words) VALUES ('delete', old.rowid, {old}); "
            f"INSERT INTO {fts} (rowid, words) VALUES (new.rowid, {new}); END"
        )
        op.execute(
            f"CREATE TRIGGER {fts}_delete AFTER DELETE ON {table} BEGIN "
            f"INSERT INTO {fts} ({fts}, rowid, words) VALUES ('delete', old.rowid, {old}); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP INDEX ix_{table}_words")
        return
    for fts in TABLES.values():
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER {fts}_{event}")
        op.execute(f"DROP TABLE {fts}")
