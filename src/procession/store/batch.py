"""Batched writes for bulk chunks, in each database's fastest form: one ``unnest`` statement of binary
arrays per batch on PostgreSQL, one multi-row ``VALUES`` statement per batch on SQLite. Each is built as a
``Write`` (SQL text and parameters, no connection needed: a chunk's writes are built while the one before
commits) and run with ``run`` on the unit of work's connection: raw driver calls in its transaction, no
ORM objects and no per-row statement compilation."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from procession.domain.procedure import Procedure
from procession.domain.process import Event, Process
from procession.store import tables as t
from procession.store.statement import Statement, json_text

FIXED = {"id", "team", "procedure", "created_by", "created_at", "parent_procedure"}  # set when created


def _array_type(column: sa.Column[Any]) -> str:
    """The PostgreSQL type of a column's values, for its array in ``unnest``."""
    kind = column.type
    for python_type, name in ((sa.JSON, "jsonb"), (sa.Boolean, "boolean"), (sa.BigInteger, "bigint")):
        if isinstance(kind, python_type):
            return name
    return "integer" if isinstance(kind, sa.Integer) else "text"


# process field -> (column, PostgreSQL array type): the fields a save may change
MUTABLE = {
    name: (column, _array_type(t.processes.c[column]))
    for name, column in t.PROCESS_COLUMNS.items()
    if name not in FIXED
}
JSON_FIELDS = ("data", "derived_data")


@dataclass(frozen=True)
class Write:
    """One batched statement, built ahead: ``reply=False`` sends it behind the work that follows (see
    ``UnitOfWork.pipelined``)."""

    sql: str
    params: Any
    reply: bool = True


def run(conn: sa.Connection, writes: Iterable[Write]) -> int:
    """Run ``writes`` in the connection's transaction: the rows they changed (-1 for each one sent behind).
    Errors as SQLAlchemy's, so that a key a concurrent writer took is an ``IntegrityError`` as everywhere
    else."""
    return sum(
        int(Statement.on_driver(conn, w.sql, w.params, many=False, rowcount=True, reply=w.reply)[0])
        for w in writes
    )


def _json(values: list[Any]) -> list[str | None]:
    """JSON values as text (None stays NULL), for both databases: PostgreSQL gets them as a ``text[]`` cast to
    ``jsonb`` in the statement, which its driver sends several times faster than ``Jsonb`` objects."""
    return [None if v is None else json_text(v) for v in values]


def _values(
    conn: sa.Connection,
    sql: str,
    rows: list[tuple[Any, ...]],
    after: tuple[Any, ...] = (),
    *,
    reply: bool = True,
) -> list[Write]:
    """SQLite: ``sql`` with its ``{}`` made a ``VALUES`` list of ``rows`` (then ``after`` bound), in as few
    statements as the connection's bound on parameters allows. One statement is one call into SQLite, made
    without Python's lock, where ``executemany`` takes the lock back for every row."""
    width = len(rows[0])
    bound = conn.connection.driver_connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)  # type: ignore[union-attr]
    per = (bound - len(after)) // width
    row = f"({', '.join('?' * width)})"
    return [
        Write(
            sql.format(", ".join(itertools.repeat(row, len(part)))),
            [*itertools.chain.from_iterable(part), *after],
            reply,
        )
        for part in (rows[start : start + per] for start in range(0, len(rows), per))
    ]


def _postgresql(conn: sa.Connection) -> bool:
    return conn.dialect.name == "postgresql"


def update_processes(
    conn: sa.Connection,
    procedure: Procedure,
    processes: list[Process],
    changes: Iterable[str],
    read: dict[str, int] | None = None,
) -> list[Write]:
    """Write back what ``changes`` (keys of ``process.updated`` changes, of one save or of many) altered in
    processes of ``procedure``, matched by id within their team (and, given ``read``, only if still at the
    version read); their primary-key values only if the key is among the changes. Columns nothing changed
    are left out: SQLite rewrites every index on a column that is set, even to the value it had. Run, they
    count the processes written."""
    if not processes:
        return []
    changes = set(changes)
    fields = Process.fields_written(changes)
    # the columns, each a list over the processes: the written ones, then the matched ones
    written: list[tuple[str, str, list[Any]]] = []
    if procedure.primary_key is not None and f"data.{procedure.primary_key}" in changes:
        written.append(("pk_value", "text", [procedure.key_of(p.data) for p in processes]))
    for name, (column, kind) in MUTABLE.items():
        if name in fields:
            values = [getattr(p, name) for p in processes]
            written.append((column, kind, _json(values) if name in JSON_FIELDS else values))
    both = [
        *written,
        ("id", "text", [p.id for p in processes]),
        ("team_id", "text", [p.team for p in processes]),
    ]
    if read is not None:
        both.append(("version", "integer", [read[p.id] for p in processes]))
    matched = [(i, col) for i, (col, _, _) in enumerate(both) if i >= len(written)]
    if _postgresql(conn):
        # the arrays' columns are named by position (the version is both written and matched); JSON goes as
        # text, cast in the statement
        sets = [f"{col} = u.c{i}::{kind}" for i, (col, kind, _) in enumerate(written)]
        arrays = ", ".join(f"%b::{'text' if kind == 'jsonb' else kind}[]" for _, kind, _ in both)
        return [
            Write(
                f"UPDATE processes AS p SET {', '.join(sets)} FROM unnest({arrays}) "
                f"AS u({', '.join(f'c{i}' for i in range(len(both)))}) "
                f"WHERE {' AND '.join(f'p.{col} = u.c{i}' for i, col in matched)}",
                [values for _, _, values in both],
            )
        ]
    sets = [f"{col} = u.column{i + 1}" for i, (col, _, _) in enumerate(written)]
    return _values(
        conn,
        f"UPDATE processes SET {', '.join(sets)} FROM (VALUES {{}}) AS u "
        f"WHERE {' AND '.join(f'processes.{col} = u.column{i + 1}' for i, col in matched)}",
        list(zip(*(values for _, _, values in both), strict=True)),
    )


def insert_events(
    conn: sa.Connection, team_id: str, events: list[tuple[str, Event]], *, actor: str | None, now: int
) -> list[Write]:
    """Append events: ``(process id, event)`` pairs."""
    if not events:
        return []
    if _postgresql(conn):
        return [
            Write(
                "INSERT INTO events (team_id, process_id, type, actor, payload, created_at) "
                "SELECT %s, u.pid, u.type, %s, u.payload::jsonb, %s "
                "FROM unnest(%b::text[], %b::text[], %b::text[]) AS u(pid, type, payload)",
                [
                    team_id,
                    actor,
                    now,
                    [p for p, _ in events],
                    [e.type for _, e in events],
                    _json([e.payload for _, e in events]),
                ],
            )
        ]
    return _values(
        conn,
        "INSERT INTO events (team_id, process_id, type, actor, payload, created_at) VALUES {}",
        [(team_id, pid, e.type, actor, json_text(e.payload), now) for pid, e in events],
    )


OF_TEAM = "EXISTS (SELECT 1 FROM jobs WHERE jobs.id = {0} AND jobs.team_id = {0})"  # the job is the team's


def mark_entries(
    conn: sa.Connection, team_id: str, job_id: str, results: list[dict[str, Any]]
) -> list[Write]:
    """Record entry results: dicts of ``b_idx``, ``b_status``, ``b_process``, ``b_error``."""
    if not results:
        return []
    if _postgresql(conn):
        # the range of the indexes bounds the entries the join looks at whatever the planner expects of the
        # job: entries just stored have no statistics yet, and a hash join would read every entry of the job
        return [
            Write(
                "UPDATE job_entries AS e SET status = u.status, process_id = u.pid, error = u.error::jsonb "
                "FROM unnest(%b::int[], %b::text[], %b::text[], %b::text[]) AS u(idx, status, pid, error) "
                "WHERE e.job_id = %s AND e.idx BETWEEN %s AND %s AND e.idx = u.idx AND "
                + OF_TEAM.format("%s"),
                [
                    [r["b_idx"] for r in results],
                    [r["b_status"] for r in results],
                    [r["b_process"] for r in results],
                    _json([r["b_error"] for r in results]),
                    job_id,
                    min(r["b_idx"] for r in results),
                    max(r["b_idx"] for r in results),
                    job_id,
                    team_id,
                ],
            )
        ]
    return _values(
        conn,
        "UPDATE job_entries SET status = u.column2, process_id = u.column3, error = u.column4 "
        "FROM (VALUES {}) AS u WHERE job_entries.job_id = ? AND job_entries.idx = u.column1 AND "
        + OF_TEAM.format("?"),
        [
            (
                r["b_idx"],
                r["b_status"],
                r["b_process"],
                None if r["b_error"] is None else json_text(r["b_error"]),
            )
            for r in results
        ],
        after=(job_id, job_id, team_id),
    )


def insert_entries(
    conn: sa.Connection, team_id: str, job_id: str, entries: list[tuple[int, str, str, Any, Any]]
) -> list[Write]:
    """Store job entries: ``(index, status, item as JSON text, change, error)``; sent behind the work that
    follows (``UnitOfWork.pipelined``)."""
    if not entries:
        return []
    if _postgresql(conn):
        return [
            Write(
                "INSERT INTO job_entries (job_id, idx, status, item, change, error) "
                "SELECT %s, u.idx, u.status, u.item::jsonb, u.change::jsonb, u.error::jsonb "
                "FROM unnest(%b::int[], %b::text[], %b::text[], %b::text[], %b::text[]) "
                "AS u(idx, status, item, change, error) WHERE " + OF_TEAM.format("%s"),
                [
                    job_id,
                    [e[0] for e in entries],
                    [e[1] for e in entries],
                    [e[2] for e in entries],
                    _json([e[3] for e in entries]),
                    _json([e[4] for e in entries]),
                    job_id,
                    team_id,
                ],
                reply=False,
            )
        ]
    return _values(
        conn,
        "INSERT INTO job_entries (job_id, idx, status, item, change, error) SELECT * FROM (VALUES {}) WHERE "
        + OF_TEAM.format("?"),
        [
            (
                job_id,
                i,
                status,
                item,
                None if change is None else json_text(change),
                None if error is None else json_text(error),
            )
            for i, status, item, change, error in entries
        ],
        after=(job_id, team_id),
        reply=False,
    )
