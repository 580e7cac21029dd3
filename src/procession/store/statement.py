"""How statements run: a Core statement compiled once and sent straight to the driver (``Statement``),
hand-written reads (``driver_rows``), a built statement's rows as the driver gives them (``driver_result``),
JSON as text, and PostgreSQL's pipeline replies."""

from __future__ import annotations

import logging
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import psycopg
import sqlalchemy as sa
from psycopg.types.json import Jsonb
from sqlalchemy.dialects.postgresql import psycopg as postgresql_psycopg

log = logging.getLogger("procession.store")
# key in a SQLite connection's ``info`` inside ``UnitOfWork.pipelined``: ``send(sql, args, many)``, which runs
# a write on the pipeline's thread
BEHIND = "procession.behind"
# marks a statement that is across teams by design (an API key found by its hash, the task engine's queue):
# the tenancy check (``tenancy``) lets it pass
ACROSS_TEAMS = "/* all teams */ "
# (engine, sql, args) -> None: the tenancy check of statements sent straight to the driver; set only when
# it is on (``tenancy.install``), so that off it costs one test of a global
check_sent: Callable[[sa.Engine, str, Any], None] | None = None


def json_text(value: Any) -> str:
    """``value`` as JSON text (orjson's, as stored)."""
    return orjson.dumps(value).decode()


def sqlite_json(value: Any) -> Any:
    """A JSON column's value as SQLite gives it back: its text, or a number: the column has NUMERIC affinity,
    so SQLite keeps the text of a bare number (a bulk item ``5``, say) as that number."""
    return value if isinstance(value, int | float) else orjson.loads(value)


_REQUIRED = object()  # marks a parameter a statement cannot run without
_POSITIONAL_PG = postgresql_psycopg.dialect(paramstyle="format")  # compiles to %s placeholders


def _on_sqlite(conn: sa.Connection) -> bool:
    return conn.dialect.name == "sqlite"


def _jsonb(value: Any) -> Any:
    return None if value is None else Jsonb(value, dumps=json_text)


_own = threading.local()  # per thread: engine -> a pooled connection it keeps, for ``first_on_own``


class Statement:
    """A Core statement built once, run with a dict of parameters; rows come back as plain tuples.

    It is compiled once (per set of parameter names) to SQL text with positional parameters and run on the
    driver's cursor: for the point queries and single-row writes of a create, SQLAlchemy's per-call work
    (~35 µs on SQLite, ~150 µs on PostgreSQL) is several times the database's own, and on PostgreSQL it
    made a create CPU-bound. JSON parameters and columns are (de)serialised as the engine does, and driver
    errors are wrapped as SQLAlchemy's (an ``IntegrityError`` stays one).
    """

    def __init__(
        self, stmt: Any, *, json_params: Iterable[str] = (), json_columns: Iterable[int] = ()
    ) -> None:
        self.stmt = stmt
        self.json_params, self.json_columns = frozenset(json_params), tuple(json_columns)
        self._compiled: dict[tuple[str, tuple[str, ...]], tuple[str, list[tuple[str, Any]]]] = {}

    def rows(self, conn: sa.Connection, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run once; every row it returns."""
        sql, order = self._form(conn.dialect, params)
        rows = self.on_driver(conn, sql, self._args(order, params, conn.dialect.name), many=False)
        return _decoded(rows, self.json_columns) if _on_sqlite(conn) else rows

    def first(self, conn: sa.Connection, params: dict[str, Any]) -> tuple[Any, ...] | None:
        rows = self.rows(conn, params)
        return rows[0] if rows else None

    def scalar(self, conn: sa.Connection, params: dict[str, Any]) -> Any:
        rows = self.rows(conn, params)
        return rows[0][0] if rows else None

    def first_on_own(self, engine: sa.Engine, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """SQLite: the first row, read on this thread's own connection in autocommit (no pool checkout, no
        transaction to begin and end: a point read's overhead drops from ~70 µs to ~10 µs). For reads that
        stand alone, like a request's API key; elsewhere, PostgreSQL included, as ``first``."""
        if engine.dialect.name != "sqlite":
            with engine.connect() as conn:
                return self.first(conn, params)
        sql, order = self._form(engine.dialect, params)
        args = self._args(order, params, "sqlite")
        if check_sent is not None:
            check_sent(engine, sql, args)
        own = _own.__dict__.setdefault("connections", weakref.WeakKeyDictionary())
        if engine not in own:
            own[engine] = engine.raw_connection()  # kept for the thread's life
        rows = execute_on_driver(own[engine].driver_connection, sql, args, sqlite=True)
        return _decoded(rows[:1], self.json_columns)[0] if rows else None

    def many(self, conn: sa.Connection, params: list[dict[str, Any]]) -> None:
        """Run once per dict of parameters (all with the same names); no rows."""
        if params:
            sql, order = self._form(conn.dialect, params[0])
            kind = conn.dialect.name
            self.on_driver(conn, sql, [self._args(order, p, kind) for p in params], many=True)

    def _form(self, dialect: Any, params: dict[str, Any]) -> tuple[str, list[tuple[str, Any]]]:
        """The SQL text and its positional parameters: (name, fixed value for a literal) in order."""
        key = (dialect.name, tuple(params))
        found = self._compiled.get(key)
        if found is None:
            positional = _POSITIONAL_PG if dialect.name == "postgresql" else dialect
            compiled: Any = self.stmt.compile(dialect=positional, column_keys=list(key[1]))
            binds = compiled.binds
            order = [
                (name, _REQUIRED if binds[name].required else binds[name].value)
                for name in compiled.positiontup
            ]
            found = self._compiled[key] = (compiled.string, order)
        return found

    def _args(self, order: list[tuple[str, Any]], params: dict[str, Any], kind: str) -> tuple[Any, ...]:
        json, args = self.json_params, []
        encode = json_text if kind == "sqlite" else _jsonb
        for name, fixed in order:
            if name in params:
                args.append(encode(params[name]) if name in json else params[name])
            elif fixed is _REQUIRED:
                raise sa.exc.ArgumentError(f"a value is required for bind parameter {name!r}")
            else:
                args.append(fixed)  # a literal of the statement, e.g. the 1 of ``value + 1``
        return tuple(args)

    @staticmethod
    def on_driver(
        conn: sa.Connection, sql: str, args: Any, *, many: bool, rowcount: bool = False, reply: bool = True
    ) -> list[Any]:
        """Run SQL text on the connection's driver, in its transaction (begun as SQLAlchemy would). With
        ``reply=False``, inside ``UnitOfWork.pipelined``, it is sent behind the work that follows: on SQLite
        to the pipeline's thread, on PostgreSQL without waiting for its reply (see ``_execute``); its error
        comes when the pipeline settles, and its rowcount is -1."""
        if check_sent is not None:  # here, on the thread of its unit of work, even if sent behind
            check_sent(conn.engine, sql, args)
        if not reply and (send := conn.info.get(BEHIND)) is not None:
            send(sql, args, many)
            return [-1]
        if not conn.in_transaction():
            conn.begin()  # as SQLAlchemy's own execute would (autobegin: our BEGIN, above all a writer's)
        driver = conn.connection.driver_connection
        sqlite = _on_sqlite(conn)
        return execute_on_driver(driver, sql, args, many=many, sqlite=sqlite, rowcount=rowcount, reply=reply)


def execute_on_driver(
    driver: Any,
    sql: str,
    args: Any,
    *,
    many: bool = False,
    sqlite: bool,
    rowcount: bool = False,
    reply: bool = True,
) -> list[Any]:
    """SQL text on a driver connection: its rows (none for ``many``), or ``[rows it changed]`` with
    ``rowcount``; driver errors wrapped as SQLAlchemy's. In a PostgreSQL pipeline (``UnitOfWork.pipelined``)
    it waits for its reply, and so for those before it, unless ``reply`` is False: then it is only sent
    (its error comes with a later reply; its rowcount is -1)."""
    errors: Any = sqlite3.Error if sqlite else psycopg.Error
    try:
        cursor = driver.cursor()
        if many:
            cursor.executemany(sql, args)  # its rowcount: the sum over the rows of parameters
        else:
            cursor.execute(sql, args)
            if reply and not sqlite:
                await_reply(driver)
        if rowcount:
            return [cursor.rowcount]
        return cursor.fetchall() if cursor.description else []
    except errors as e:
        raise sa.exc.DBAPIError.instance(sql, args, e, errors) from e


def _decoded(rows: list[tuple[Any, ...]], json_columns: Iterable[int]) -> list[tuple[Any, ...]]:
    """Rows with their JSON columns (SQLite's text) decoded."""
    columns = tuple(json_columns)
    if not columns:
        return rows
    out = []
    for row in rows:
        values = list(row)
        for i in columns:
            if values[i] is not None:
                values[i] = sqlite_json(values[i])
        out.append(tuple(values))
    return out


def driver_rows(
    conn: sa.Connection, sqlite: str, postgresql: str, params: list[Any], *, json_columns: Iterable[int] = ()
) -> list[tuple[Any, ...]]:
    """The rows of a hand-written read, sent straight to the driver in the connection's transaction: for
    reads of a thousand rows, where SQLAlchemy's work per row (a ``Row``, type processing) costs more than
    the database's. The SQL comes in each dialect's form, with ``?`` or ``%s``; a list parameter is bound as
    a JSON array on SQLite (read it with ``json_each(?)``) and as an array on PostgreSQL (``= ANY(%s)``).
    ``json_columns`` are decoded on SQLite (PostgreSQL's driver decodes ``jsonb`` itself)."""
    if not _on_sqlite(conn):
        return Statement.on_driver(conn, postgresql, params, many=False)
    args = [json_text(p) if isinstance(p, list) else p for p in params]
    return _decoded(Statement.on_driver(conn, sqlite, args, many=False), json_columns)


def driver_result(conn: sa.Connection, stmt: Any) -> list[tuple[Any, ...]]:
    """The rows of a Core statement built for one call, as the driver gives them: SQLAlchemy compiles it,
    binds its values and runs it, but makes no ``Row`` and has no column type convert a value (SQLite's JSON
    stays text, its booleans 0 and 1). For reads of thousands of rows, where that work per row costs more
    than the database's; driver errors wrapped as SQLAlchemy's (SQLite reports some only as rows are read)."""
    result: Any = conn.execute(stmt)
    cursor = result.cursor
    errors: Any = sqlite3.Error if _on_sqlite(conn) else psycopg.Error
    try:
        return cursor.fetchall() if cursor.description else []
    except errors as e:
        raise sa.exc.DBAPIError.instance(None, None, e, errors) from e
    finally:
        result.close()


def await_reply(driver: Any) -> None:
    """In a PostgreSQL pipeline (``UnitOfWork.pipelined``), wait for the replies sent so far, so that the
    statement just sent has its rows and its count (a nested pipeline syncs as it ends)."""
    if driver.pgconn.pipeline_status:
        with driver.pipeline():
            pass
