"""Engines for SQLite (WAL, one writer at a time) and PostgreSQL, how hot statements run on them, and
migrations."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import psycopg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from psycopg.types.json import Jsonb
from sqlalchemy.dialects.postgresql import psycopg as postgresql_psycopg

HERE = Path(__file__).parent

log = logging.getLogger("procession.store")
# key in a SQLite connection's ``info`` inside ``UnitOfWork.pipelined``: ``send(sql, args, many)``, which runs
# a write on the pipeline's thread
BEHIND = "procession.behind"


def json_text(value: Any) -> str:
    """``value`` as JSON text (orjson's, as stored)."""
    return orjson.dumps(value).decode()


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
        own = _own.__dict__.setdefault("connections", weakref.WeakKeyDictionary())
        if engine not in own:
            own[engine] = engine.raw_connection()  # kept for the thread's life
        rows = _execute(own[engine].driver_connection, sql, self._args(order, params, "sqlite"), sqlite=True)
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
        if not reply and (send := conn.info.get(BEHIND)) is not None:
            send(sql, args, many)
            return [-1]
        if not conn.in_transaction():
            conn.begin()  # as SQLAlchemy's own execute would (autobegin: our BEGIN, above all a writer's)
        driver = conn.connection.driver_connection
        sqlite = _on_sqlite(conn)
        return _execute(driver, sql, args, many=many, sqlite=sqlite, rowcount=rowcount, reply=reply)


def _execute(
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
                _await_reply(driver)
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
                values[i] = orjson.loads(values[i])
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


# One lock per SQLite file: this process's writers queue on it for the life of their transaction, in
# order, instead of sleeping in SQLite's busy handler (whose back-off grows to 100 ms a try).
_write_locks: dict[str, threading.Lock] = {}
_locks_by_url: dict[sa.URL, threading.Lock | None] = {}
_guard = threading.Lock()


def write_lock(engine: sa.Engine) -> threading.Lock | None:
    """The lock this process's writers to ``engine``'s SQLite file take; None on PostgreSQL (row locks)."""
    url = engine.url
    if url in _locks_by_url:
        return _locks_by_url[url]
    with _guard:
        lock = None
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            path = str(Path(str(url.database)).resolve())
            lock = _write_locks.setdefault(path, threading.Lock())
        return _locks_by_url.setdefault(url, lock)


# Every connection to an SQLite file. A writer checkpoints the WAL itself only past 4,000 pages (16 MiB),
# and not at all while a ``Checkpointer`` runs: writers are spared copying pages to the database file and
# syncing it. Reads go through a memory map of the file (shared by all connections, up to
# 1 GiB) and an 8 MiB page cache per connection, instead of 2 MiB and a read call per page: a bulk chunk's
# index lookups then stay in memory (+25% entries/s on a 100 MB file), and the pages a chunk writes (about
# 6 MiB) fit. Not more: the caches of the connections the runner takes in turn are most of its memory.
SQLITE_PRAGMAS = (
    "journal_mode=WAL",
    "synchronous=NORMAL",
    "foreign_keys=ON",
    "busy_timeout=30000",
    "wal_autocheckpoint=4000",
    "journal_size_limit=134217728",  # a WAL started over is cut back to 128 MiB, the bulk runner's cycle
    "cache_size=-8192",
    "mmap_size=1073741824",
)


class Checkpointer:
    """A thread with a connection of its own that copies the WAL into an SQLite database file every
    ``interval`` seconds (``wal_checkpoint(PASSIVE)``: it never waits for, nor blocks, readers and writers).
    Writers then only append to the WAL, which for small transactions roughly doubles their rate. While it
    runs, the engine's connections never checkpoint themselves: a transaction's pages can be copied only
    once it commits, so a large one (a bulk submission: 10,000 pages and more) would go past the writers'
    threshold and copy the whole WAL in its own commit, before its reply (a fifth of a bulk submission)."""

    def __init__(self, engine: sa.Engine, interval: float = 0.05) -> None:
        self.engine, self.interval = engine, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="procession-checkpointer", daemon=True)

    def start(self) -> None:
        sa.event.listen(self.engine, "connect", _leave_checkpoints)
        self.engine.dispose()  # the connections opened before are opened again, leaving checkpoints too
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        sa.event.remove(self.engine, "connect", _leave_checkpoints)
        self.engine.dispose()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                with self.engine.connect() as conn:
                    driver = conn.connection.driver_connection
                    while not self._stop.wait(self.interval):
                        with contextlib.suppress(sqlite3.Error):  # busy or locked: the next turn checkpoints
                            driver.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
            except Exception:  # no connection: it must go on, as the writers leave the WAL to it
                log.exception("checkpointer: will retry")
                self._stop.wait(1)


def checkpoint(engine: sa.Engine) -> None:
    """SQLite: copy the WAL into the database file now, as far as readers allow, after any checkpoint under
    way (such as the ``Checkpointer``'s: SQLite answers "busy" to a second one), waiting up to a second for
    it. Once all of it is copied, a write transaction begun after it with no reader left on the WAL writes
    the WAL over from its start, instead of growing it. Best effort: a failure is logged. Nothing elsewhere."""
    if engine.dialect.name != "sqlite":
        return
    deadline = time.monotonic() + 1
    try:
        with engine.connect() as conn:
            driver: Any = conn.connection.driver_connection
            while driver.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[0]:  # busy
                if time.monotonic() > deadline:
                    log.info("checkpoint: another one is still under way")
                    return
                time.sleep(0.001)
    except (sqlite3.Error, sa.exc.DBAPIError) as e:  # the disk, say: the Checkpointer tries again
        log.warning("checkpoint failed: %r", e)


def _leave_checkpoints(dbapi_conn: Any, _: Any) -> None:
    dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")


SQLITE_NEEDED = (3, 35)  # RETURNING (3.35), UPDATE ... FROM (3.33)


def make_engine(url: str) -> sa.Engine:
    """An engine for ``url``: SQLite gets WAL and explicit ``BEGIN [IMMEDIATE]``."""
    if url.startswith("sqlite"):
        if sqlite3.sqlite_version_info < SQLITE_NEEDED:
            raise RuntimeError(
                f"SQLite {'.'.join(map(str, SQLITE_NEEDED))} or later is needed; this Python has "
                f"{sqlite3.sqlite_version}: use a Python built with a newer one, or PostgreSQL"
            )
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            json_serializer=json_text,
            json_deserializer=orjson.loads,
            pool_size=40,  # kept open: an overflow connection would be opened and closed per checkout
            max_overflow=0,
            connect_args={"timeout": 30},
        )

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself, below
            for pragma in SQLITE_PRAGMAS:
                dbapi_conn.execute(f"PRAGMA {pragma}")

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            # writers take the lock up front so two writers never deadlock on upgrade; sent on the driver's
            # connection (no statement to compile, no result to build), errors wrapped as SQLAlchemy's
            statement = f"BEGIN {conn.get_execution_options().get('sqlite_begin', '')}"
            _execute(conn.connection.driver_connection, statement, (), sqlite=True)

        return engine
    engine = sa.create_engine(
        url,
        json_serializer=json_text,
        json_deserializer=orjson.loads,
        pool_size=10,
        max_overflow=30,
        pool_pre_ping=True,
    )

    @sa.event.listens_for(engine, "after_cursor_execute")
    def _on_execute(conn: sa.Connection, *_: Any) -> None:
        _await_reply(conn.connection.driver_connection)

    return engine


def _await_reply(driver: Any) -> None:
    """In a PostgreSQL pipeline (``UnitOfWork.pipelined``), wait for the replies sent so far, so that the
    statement just sent has its rows and its count (a nested pipeline syncs as it ends)."""
    if driver.pgconn.pipeline_status:
        with driver.pipeline():
            pass


def alembic_config(url: str) -> Config:
    """Alembic's configuration for the database at ``url``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the newest schema."""
    command.upgrade(alembic_config(url), "head")
