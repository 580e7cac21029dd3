"""Text search: the words of a process's string values and of its record's, kept by the database itself in
the transaction that writes the row (so every save, a bulk one included, keeps them); ``matching``, the
condition of a list's ``q``, read as ``reach`` says (few rows looked up, or many, or most along the list);
and ``RecordHolds``, the records whose words hold a value, which narrows an equality on a record's attribute.

PostgreSQL: a GIN index on ``to_tsvector('simple', data)`` (the words of the JSON document's string values)
of ``processes`` and of ``records``. SQLite: an FTS5 table per table (contentless: the words are not stored
twice) whose rows are the rows' ``rowid``. Triggers on insert, on a change of ``data`` and on delete note
the row, with the document whose words the FTS5 table holds for it, in a ``…_pending`` table (migration
0011); ``settle``, run as each transaction commits (``db.make_engine``), writes their words into the FTS5
table in ``rowid`` order (``words_of``: what is removed is exactly what was added). FTS5 writes its
pending terms out each time a row comes before the last one written: row by row, an update of rows in no
order would write them out for every row, some hundred times slower. Each commit that wrote words adds a
segment to the FTS5 table; ``tidy``, periodic upkeep, merges them into one.

Words are compared whole, without regard to case ('simple': no stemming, which would be wrong for names,
cities and codes); every word of ``q`` must match, in the process or in its record. On SQLite the words of
rows written in the open transaction are found once it commits.
"""

from __future__ import annotations

import math
import re
import sqlite3
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

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


TIDY_PAGES = 500  # FTS5 pages a step of ``tidy`` merges, about 2 MB: a short transaction


def tidy(conn: sa.Connection, pages: int = TIDY_PAGES) -> bool:
    """SQLite: merge a step (``pages``) of each FTS5 table's segments towards one; whether there is more to
    do. Each transaction writes a segment and merges only alike ones (FTS5's automerge), so their count grows
    with the log of the commits; a word is looked up in each, and a row's words (``MOST``) checked in each
    (1,000,000 processes: a tenth of the time with one than with ten). Merging rewrites the table a step at
    a time (for 1,000,000 processes about 26 MB, 0.6 s), so it runs as periodic upkeep
    (``engine.retention``), not at every commit. Nothing to do on PostgreSQL (GIN keeps itself)."""
    if conn.dialect.name != "sqlite":
        return False
    driver: Any = conn.connection.driver_connection
    more = False
    for fts in TABLES.values():  # (negative: every segment, on every level, towards one)
        before = driver.total_changes
        driver.execute(f"INSERT INTO {fts} ({fts}, rank) VALUES ('merge', ?)", (-pages,))
        more = more or driver.total_changes - before >= 2  # 1: the command alone, no merge
    return more


def tidy_steps(conn: sa.Connection, pages: int = TIDY_PAGES) -> int:
    """SQLite: the steps of ``tidy`` that merge the FTS5 tables as they are into one segment each (and one);
    0 on PostgreSQL."""
    if conn.dialect.name != "sqlite":
        return 0
    written = sum(
        conn.exec_driver_sql(f"SELECT count(*) FROM {fts}_data").scalar_one() for fts in TABLES.values()
    )
    return written // pages + 1


def terms(q: str) -> list[str]:
    """The terms of ``q`` (split on spaces and control characters, which no word holds); ``invalid_query``
    if it holds no word or too many."""
    found = _CONTROL.sub(" ", q).split()
    if not any(_WORD.search(term) for term in found):
        raise Invalid.one("invalid_query", "q must hold at least one word (letters or digits)", "q")
    if len(found) > MAX_TERMS:
        raise Invalid.one("too_complex", f"q holds at most {MAX_TERMS} words", "q")
    return found


COMMON = 2_000  # rows: at most this many are always few (SQLite; see ``reach``)
MOST_SPAN = 50  # SQLite: words finding more than this many times the square root of the rows are MOST
FEW_SHARE = 0.01  # PostgreSQL: of a table's rows, the most the planner may expect the words to find if few
FEW, MANY, MOST = "few", "many", "most"  # how much of the list the words of a q find (``reach``)


def _match(q: str) -> str:
    """FTS5: each term a string (its quotes doubled), so that nothing in it is read as FTS5 syntax."""
    return " ".join('"' + term.replace('"', '""') + '"' for term in terms(q))


def _tsquery(q: str) -> Any:
    return sa.func.plainto_tsquery(sa.literal_column("'simple'"), " ".join(terms(q)))


# PostgreSQL: the row addresses of the processes (of the team's procedure) whose words, or whose record's,
# hold every word of ``q``: read through the words' GIN indexes, and the record's processes' index
_OWN_ROWS = (
    "SELECT ctid FROM processes WHERE to_tsvector('simple', data) @@ plainto_tsquery('simple', :q_words) "
    "AND team_id = :q_team AND procedure_id = :q_procedure"
)
_RECORDS_ROWS = (
    "SELECT processes.ctid FROM records JOIN processes ON processes.procedure_id = :q_procedure AND "
    "processes.record_id = records.id AND processes.team_id = :q_team WHERE records.team_id = :q_team AND "
    "to_tsvector('simple', records.data) @@ plainto_tsquery('simple', :q_words)"
)


_FOUND = (  # the rows of a table (any team's) whose words hold those of ``q``: what its words' index reads
    "SELECT 1 FROM {} WHERE to_tsvector('simple', data) @@ plainto_tsquery('simple', :q_words)"
)


def _expected(conn: sa.Connection, rows: str, params: dict[str, str]) -> float:
    """PostgreSQL: the rows the planner expects ``rows`` to find."""
    plan: Any = conn.execute(sa.text(f"EXPLAIN (FORMAT JSON) {rows}"), params).scalar()
    return float(plan[0]["Plan"]["Plan Rows"])


def reach(conn: sa.Connection, q: str, team_id: str, procedure_id: str) -> str:
    """How the processes whose words hold those of ``q`` are best read: ``FEW``, looked up, then sorted;
    ``MANY``, as the planner finds best (PostgreSQL), or along the list's order, each looked for among those
    the words find, until the page is full (SQLite); ``MOST``, along the list's order, each row's own words
    looked in (SQLite).

    PostgreSQL: ``FEW`` (the rows read by address, then sorted, where the planner's own choice for words it
    misjudges can be to walk the whole list reading each row's words) when the planner expects the words to
    find at most ``FEW_SHARE`` of the processes, and of the records (of any team: what their indexes read),
    else ``MANY``. SQLite: ``FEW`` when the process's words find at most ``COMMON`` rows or three times the
    square root of the procedure's (in the figures of ``ANALYZE``), ``MOST`` past ``MOST_SPAN`` times that
    root, else ``MANY``: looking rows up costs per row found; walking the list per row passed over, which
    common words make few, and listing the rows found first per row found (0.1-0.3 µs), looking in a row's
    words instead per row passed over (10-20 µs, the index merged: ``tidy``). At 1,000,000 processes, in
    the database: a word in 1 of 180 of them, 11 ms for ``MANY``, 165 for ``MOST``; in 1 of 12, 25 and 6;
    in 1 of 3, 45 and 2."""
    params = {"q_words": " ".join(terms(q)), "q_team": team_id, "q_procedure": procedure_id}
    if conn.dialect.name == "postgresql":
        tables: dict[str, float] = dict(
            conn.execute(
                sa.text(
                    f"{ACROSS_TEAMS}SELECT relname, reltuples FROM pg_class "
                    "WHERE relname IN ('processes', 'records') AND relkind = 'r'"
                )
            ).all()
        )
        few = all(
            _expected(conn, _FOUND.format(table), {"q_words": params["q_words"]})
            <= max(COMMON, FEW_SHARE * tables.get(table, 0))
            for table in ("processes", "records")
        )
        return FEW if few else MANY
    root = math.sqrt(_rows_per_procedure(conn))
    cap = max(COMMON, int(3 * root))
    most = max(cap, int(MOST_SPAN * root))
    found = conn.exec_driver_sql(
        "SELECT count(*) FROM (SELECT 1 FROM process_words WHERE process_words MATCH ? LIMIT ?)",
        (_match(q), most + 1),
    ).scalar_one()
    return MOST if found > most else MANY if found > cap else FEW


def _rows_per_procedure(conn: sa.Connection) -> int:
    """SQLite: the processes of a procedure, on average, in the figures of ``ANALYZE`` (0 without)."""
    try:
        stat = conn.exec_driver_sql(
            "SELECT stat FROM sqlite_stat1 WHERE tbl = 'processes' AND idx = 'ix_processes_updated'"
        ).scalar()
    except sa.exc.OperationalError as e:  # never analysed: no figures
        if "no such table" in str(e):
            return 0
        raise
    return int(stat.split()[1]) if stat else 0


def matching(dialect: str, q: str, team_id: str, procedure_id: str, *, reach: str = MANY) -> Any:
    """Processes (of ``procedure_id``) whose string values, or whose record's, hold every word of ``q``,
    read as ``reach`` says (``FEW``, ``MANY`` or ``MOST``: the same rows, in whichever way is quickest for
    how many they are). On PostgreSQL, ``MANY`` and ``MOST`` read alike."""
    p, r = t.processes.c, t.records.c
    params = {"q_words": " ".join(terms(q)), "q_team": team_id, "q_procedure": procedure_id}
    if dialect == "postgresql":
        if reach == FEW:  # by row address (a TID scan), whatever the planner expects of the words
            return sa.or_(
                *(
                    sa.text(f"processes.ctid = ANY(ARRAY({rows}))").bindparams(**params)
                    for rows in (_OWN_ROWS, _RECORDS_ROWS)
                )
            )
        records = sa.select(r.id).where(r.team_id == team_id, _holds(r.data, q))
        # one bitmap each (the words' GIN index, the record's processes' index), or'ed
        return sa.or_(_holds(p.data, q), p.record_id == sa.func.any(sa.func.array(records.scalar_subquery())))
    # the rowids of the processes whose record's words match, looked up by rowid
    of_records = sa.text(  # records first (CROSS JOIN: SQLite keeps the order), then their processes, by
        # the index on them whatever the figures on it say (none of a procedure's processes may have a record)
        "SELECT processes.rowid FROM records CROSS JOIN processes INDEXED BY ix_processes_record WHERE "
        "records.team_id = :q_team AND "
        "records.rowid IN (SELECT rowid FROM record_words WHERE record_words MATCH :q_words) AND "
        "processes.procedure_id = :q_procedure AND processes.record_id = records.id AND "
        "processes.team_id = :q_team"
    )
    params |= {"q_words": _match(q)}
    if reach == MOST:  # each row along the list looked for among its words: no list of them all made
        own = sa.text(
            "EXISTS (SELECT 1 FROM process_words WHERE process_words MATCH :q_words AND "
            "process_words.rowid = processes.rowid)"
        )
        return sa.or_(
            own.bindparams(q_words=params["q_words"]),
            sa.literal_column("+processes.rowid").in_(of_records.bindparams(**params)),
        )
    # one list of rowids (the process's words', then its record's processes'), looked up by rowid
    rowids = sa.text(
        f"SELECT rowid FROM process_words WHERE process_words MATCH :q_words UNION ALL {of_records.text}"
    ).bindparams(**params)
    return sa.literal_column("+processes.rowid" if reach == MANY else "processes.rowid").in_(rowids)


def _holds(data: Any, q: str) -> Any:
    """PostgreSQL: the JSON document's string values hold every word of ``q`` (its words' GIN index)."""
    return sa.func.to_tsvector(sa.literal_column("'simple'"), data).bool_op("@@")(_tsquery(q))


_LETTER_OR_DIGIT = re.compile(r"[^\W_]")  # a character both databases' tokenizers keep in a word


class RecordHolds(ColumnElement[Any]):
    """Records whose words hold every word of ``value``: true of every record one of whose string values is
    ``value``, so that an equality on a record's text attribute can be narrowed by the records' words index
    first (``search.clause``). Only for a value with a word (``has_words``): no words would hold nothing."""

    inherit_cache = True
    _traverse_internals = [("value", InternalTraversal.dp_string)]
    type = sa.types.NullType()  # a condition, not a value (SQLite would compare a boolean with 1)

    def __init__(self, value: str) -> None:
        self.value = value


def has_words(value: Any) -> bool:
    """Whether each whitespace-separated term of the string ``value`` that both tokenizers read words in
    holds one (``RecordHolds`` looks only for those), and there is one."""
    return isinstance(value, str) and bool(_LETTER_OR_DIGIT.search(value)) and len(value) <= 500


@compiles(RecordHolds, "sqlite")
def _sqlite_holds(element: RecordHolds, compiler: SQLCompiler, **kw: Any) -> str:
    found = [term for term in _CONTROL.sub(" ", element.value).split() if _LETTER_OR_DIGIT.search(term)]
    match = compiler.process(
        sa.bindparam(None, " ".join('"' + w.replace('"', '""') + '"' for w in found)), **kw
    )
    return f"records.rowid IN (SELECT rowid FROM record_words WHERE record_words MATCH {match})"


@compiles(RecordHolds)
def _holds_words(element: RecordHolds, compiler: SQLCompiler, **kw: Any) -> str:
    words = compiler.process(sa.bindparam(None, element.value), **kw)
    return f"to_tsvector('simple', records.data) @@ plainto_tsquery('simple', {words})"
