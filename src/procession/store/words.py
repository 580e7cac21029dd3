"""Text search: the words of a process's string values and of its record's, kept by the database itself in
the statement that writes the row (so every save, a bulk one included, keeps them in its transaction), and
``matching``, the condition of a list's ``q``.

PostgreSQL: a GIN index on ``to_tsvector('simple', data)`` (the words of the JSON document's string values)
of ``processes`` and of ``records``. SQLite: an FTS5 table per table (contentless: the words are not stored
twice) whose rows are the rows' ``rowid``, kept by triggers on insert, on a change of ``data`` and on delete
(migration 0011). Words are compared whole, without regard to case ('simple': no stemming, which would be
wrong for names, cities and codes); every word of ``q`` must match, in the process or in its record.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from procession.domain.errors import Invalid
from procession.store import tables as t

MAX_TERMS = 16
_WORD = re.compile(r"\w")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def terms(q: str) -> list[str]:
    """The terms of ``q`` (split on spaces and control characters, which no word holds); ``invalid_query``
    if it holds no word or too many."""
    found = _CONTROL.sub(" ", q).split()
    if not any(_WORD.search(term) for term in found):
        raise Invalid.one("invalid_query", "q must hold at least one word (letters or digits)", "q")
    if len(found) > MAX_TERMS:
        raise Invalid.one("too_complex", f"q holds at most {MAX_TERMS} words", "q")
    return found


def matching(dialect: str, q: str, team_id: str, procedure_id: str) -> Any:
    """Processes (of ``procedure_id``) whose string values, or whose record's, hold every word of ``q``."""
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
    # FTS5: each term a string (its quotes doubled), so that nothing in it is read as FTS5 syntax; one list
    # of rowids (the process's words', then its record's processes'), looked up by rowid
    match = " ".join('"' + term.replace('"', '""') + '"' for term in terms(q))
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
    return sa.literal_column("processes.rowid").in_(rowids)
