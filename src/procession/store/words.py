"""Text search: the words of a process's string values and of its record's, kept by the database itself in
the transaction that writes the row (so every save, a bulk one included, keeps them), and ``matching``, the
condition of a list's ``q``.

PostgreSQL: a GIN index on ``to_tsvector('simple', data)`` (the words of the JSON document's string values)
of ``processes`` and of ``records``. SQLite: an FTS5 table per table (contentless: the words are not stored
twice) whose rows are the rows' ``rowid``. Triggers on insert, on a change of ``data`` and on delete note
the row, with the document whose words the FTS5 table holds for it, in a ``…_pending`` table (migration
0011); ``settle``, run as each transaction commits (``db.make_engine``), writes their words into the FTS5
table in ``rowid`` order (``words_of``: what is removed is exactly what was added). FTS5 writes its
pending terms out each time a row comes before the last one written: row by row, an update of rows in no
order would write them out for every row, some hundred times slower.

Words are compared whole, without regard to case ('simple': no stemming, which would be wrong for names,
cities and codes); every word of ``q`` must match, in the process or in its record.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

import orjson
import sqlalchemy as sa

from procession.domain.errors import Invalid
from procession.store import tables as t
from procession.store.statement import ACROSS_TEAMS

MAX_TERMS = 16
_WORD = re.compile(r"\w")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


TABLES = {"processes": "process_words", "records": "record_words"}  # SQLite: each table's FTS5 table


def words_of(data: Any) -> str | None:
    """The string values of a JSON document, at any depth, in document order, joined by spaces."""
    found: list[str] = []
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, dict):
            stack.extend(reversed(value.values()))
        elif isinstance(value, list):
            stack.extend(reversed(value))
    return " ".join(found) if found else None


def settle(driver: Any) -> None:
    """SQLite: write the words of the rows the open transaction changed into the FTS5 tables, in ``rowid``
    order (``driver``: the connection's, in that transaction, just before it commits)."""
    for table, fts in TABLES.items():
        try:
            noted = driver.execute(
                f"{ACROSS_TEAMS}SELECT w.rowid, w.indexed, w.old, t.data FROM {fts}_pending AS w "
                f"LEFT JOIN {table} AS t ON t.rowid = w.rowid ORDER BY w.rowid"
            ).fetchall()
        except sqlite3.OperationalError as e:  # a database not migrated yet: nothing to settle
            if "no such table" in str(e):
                return
            raise
        if not noted:
            continue
        removed, added = [], []
        for rowid, indexed, old, data in noted:
            before = words_of(orjson.loads(old)) if indexed and old else None
            after = words_of(orjson.loads(data)) if data is not None else None
            if before is not None and before == after:
                continue  # a change of numbers, dates, flags: the same words
            if indexed and old:
                removed.append((rowid, before))
            if data is not None:
                added.append((rowid, after))
        driver.executemany(f"INSERT INTO {fts} ({fts}, rowid, words) VALUES ('delete', ?, ?)", removed)
        driver.executemany(f"INSERT INTO {fts} (rowid, words) VALUES (?, ?)", added)
        driver.execute(f"DELETE FROM {fts}_pending")


def terms(q: str) -> list[str]:
    """The terms of ``q`` (split on spaces and control characters, which no word holds); ``invalid_query``
    if it holds no word or too many."""
    found = _CONTROL.sub(" ", q).split()
    if not any(_WORD.search(term) for term in found):
        raise Invalid.one("invalid_query", "q must hold at least one word (letters or digits)", "q")
    if len(found) > MAX_TERMS:
        raise Invalid.one("too_complex", f"q holds at most {MAX_TERMS} words", "q")
    return found


COMMON = 2_000  # rows: a q that finds more is looked for along the list's order instead (SQLite)


def _match(q: str) -> str:
    """FTS5: each term a string (its quotes doubled), so that nothing in it is read as FTS5 syntax."""
    return " ".join('"' + term.replace('"', '""') + '"' for term in terms(q))


def common(conn: sa.Connection, q: str) -> bool:
    """SQLite: whether the processes' words of ``q`` find more than ``COMMON`` rows (of any team: what it
    costs to look them all up), counted up to that."""
    found = conn.exec_driver_sql(
        "SELECT count(*) FROM (SELECT 1 FROM process_words WHERE process_words MATCH ? LIMIT ?)",
        (_match(q), COMMON + 1),
    ).scalar()
    return bool(found and found > COMMON)


def matching(dialect: str, q: str, team_id: str, procedure_id: str, *, many: bool = False) -> Any:
    """Processes (of ``procedure_id``) whose string values, or whose record's, hold every word of ``q``;
    ``many``: the words are common (``common``), the rows are read in the list's order and each looked for
    among those the words find, instead of reading them all and then sorting them."""
    p, r = t.processes.c, t.records.c
    if dialect == "postgresql":
        simple: Any = sa.literal_column("'simple'")
        query = sa.func.plainto_tsquery(simple, " ".join(terms(q)))
        records = sa.select(r.id).where(
            r.team_id == team_id, sa.func.to_tsvector(simple, r.data).bool_op("@@")(query)
        )
        # one bitmap each (the words' GIN index, the record's processes' index), or'ed
        return sa.or_(
            sa.func.to_tsvector(simple, p.data).bool_op("@@")(query),
            p.record_id == sa.func.any(sa.func.array(records.scalar_subquery())),
        )
    # one list of rowids (the process's words', then its record's processes'), looked up by rowid
    match = _match(q)
    of_records = sa.text(  # records first (CROSS JOIN: SQLite keeps the order), then their processes, by
        # the index on them whatever the figures on it say (none of a procedure's processes may have a record)
        "SELECT processes.rowid FROM records CROSS JOIN processes INDEXED BY ix_processes_record WHERE "
        "records.team_id = :q_team AND "
        "records.rowid IN (SELECT rowid FROM record_words WHERE record_words MATCH :q_words) AND "
        "processes.procedure_id = :q_procedure AND processes.record_id = records.id AND "
        "processes.team_id = :q_team"
    )
    rowids = sa.text(
        f"SELECT rowid FROM process_words WHERE process_words MATCH :q_words UNION ALL {of_records.text}"
    ).bindparams(q_words=match, q_team=team_id, q_procedure=procedure_id)
    return sa.literal_column("+processes.rowid" if many else "processes.rowid").in_(rowids)
