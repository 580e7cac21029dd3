"""Engines for SQLite (WAL, one writer at a time) and PostgreSQL, and migrations."""

from __future__ import annotations

import errno
import sqlite3
import weakref
from pathlib import Path
from typing import Any

import orjson
import psycopg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from procession.store import tenancy, words
from procession.store.sqlite import SQLITE_NEEDED, SQLITE_PRAGMAS, Connection
from procession.store.statement import await_reply, execute_on_driver, json_text, sqlite_json

HERE = Path(__file__).parent


def make_engine(
    url: str, *, check_tenancy: Path | None = None, statement_timeout_ms: int = 0, connections: int = 40
) -> sa.Engine:
    """An engine for ``url`` (SQLite: WAL, explicit ``BEGIN [IMMEDIATE]``); ``tenancy`` checks it if asked.
    On PostgreSQL it opens at most ``connections`` and bounds each statement to ``statement_timeout_ms``
    (0: none) unless a transaction says otherwise (``uow.UnitOfWork``); SQLite's can be bounded
    (``sqlite.bound``)."""
    if url.startswith("sqlite"):
        engine = _sqlite_engine(url)
    else:
        engine = _postgresql_engine(url, statement_timeout_ms, connections)
    if check_tenancy is not None:
        tenancy.install(engine, check_tenancy)
    return engine


def _sqlite_engine(url: str) -> sa.Engine:
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
        json_deserializer=sqlite_json,
        pool_size=40,  # kept open: an overflow connection would be opened and closed per checkout
        max_overflow=0,
        connect_args={"timeout": 30, "factory": Connection},
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
        execute_on_driver(conn.connection.driver_connection, statement, (), sqlite=True)

    @sa.event.listens_for(engine, "commit")
    def _on_commit(conn: sa.Connection) -> None:
        words.settle(conn.connection.driver_connection)  # text search's, changed in the transaction

    return engine


def _postgresql_engine(url: str, statement_timeout_ms: int, connections: int) -> sa.Engine:
    kept = max(1, connections // 4)
    engine = sa.create_engine(
        url,
        json_serializer=json_text,
        json_deserializer=orjson.loads,
        pool_size=kept,
        max_overflow=connections - kept,
        pool_pre_ping=True,
    )

    @sa.event.listens_for(engine, "after_cursor_execute")
    def _on_execute(conn: sa.Connection, *_: Any) -> None:
        await_reply(conn.connection.driver_connection)

    if statement_timeout_ms:
        DEFAULT_TIMEOUT[engine] = statement_timeout_ms

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # the session's default, once per connection: no statement more per transaction
            with dbapi_conn.cursor() as cursor:
                cursor.execute(f"SET statement_timeout = {int(statement_timeout_ms)}")
            dbapi_conn.commit()

    return engine


# PostgreSQL: the statement timeout an engine's connections start with (none when absent)
DEFAULT_TIMEOUT: weakref.WeakKeyDictionary[sa.Engine, int] = weakref.WeakKeyDictionary()


def timed_out(error: BaseException | None) -> bool:
    """Whether ``error`` (SQLAlchemy's, or what it wraps) is a statement stopped at its deadline: PostgreSQL's
    ``statement_timeout`` (query_canceled) or SQLite's progress handler (``interrupted``)."""
    while error is not None:
        if isinstance(error, psycopg.errors.QueryCanceled):
            return True
        if isinstance(error, sqlite3.OperationalError) and str(error) == "interrupted":
            return True
        error = getattr(error, "orig", None)
    return False


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def storage_full(error: BaseException | None) -> bool:
    """Whether ``error`` (or what it wraps or was raised from) is a write refused for lack of storage:
    SQLite's ``SQLITE_FULL``, PostgreSQL's ``disk_full`` (SQLSTATE 53100), or the system's "no space left on
    device" or "disk quota exceeded" (an uploaded file)."""
    seen = 0
    while error is not None and seen < 16:
        if isinstance(error, psycopg.errors.DiskFull):
            return True
        if isinstance(error, sqlite3.Error) and getattr(error, "sqlite_errorname", "") == "SQLITE_FULL":
            return True
        if isinstance(error, OSError) and error.errno in NO_SPACE:
            return True
        error = getattr(error, "orig", None) or error.__cause__ or error.__context__
        seen += 1
    return False


def alembic_config(url: str) -> Config:
    """Alembic's configuration for the database at ``url``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the newest schema."""
    command.upgrade(alembic_config(url), "head")
