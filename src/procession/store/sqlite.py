"""SQLite: one writer at a time per file (``write_lock``), the pragmas every connection gets, and the WAL
kept short off the writers' path (``Checkpointer``, ``checkpoint``)."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

log = logging.getLogger("procession.store")

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
# A statement whose table has triggers (text search's, ``store.words``) keeps the pages it changes in a
# statement journal, to undo itself alone on error: in memory (``temp_store``), not in a temporary file
# written for every row (half a bulk update's time went there). Temporary tables go to memory too. The
# writes stay row by row (a statement over a whole table with triggers would hold its pages in memory).
SQLITE_PRAGMAS = (
    "journal_mode=WAL",
    "synchronous=NORMAL",
    "foreign_keys=ON",
    "busy_timeout=30000",
    "wal_autocheckpoint=4000",
    "journal_size_limit=134217728",  # a WAL started over is cut back to 128 MiB, the bulk runner's cycle
    "cache_size=-8192",
    "mmap_size=1073741824",
    "temp_store=MEMORY",
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


class Connection(sqlite3.Connection):
    """Every SQLite connection of an engine (``db.make_engine``): one that can bound how long each statement
    runs (``bound``). Its cursors mark when each statement starts (``started``), whoever sends it (SQLAlchemy
    or ``statement.execute_on_driver``); while bounded, a progress handler, called every ``PROGRESS_STEPS``
    steps of SQLite's machine, interrupts the statement once it has run longer than the limit: it fails with
    ``interrupted`` (``db.timed_out``)."""

    limit = 0.0  # seconds a statement may run while bounded
    started = 0.0  # time.monotonic() when the statement running, or the last one, started

    def cursor(self, factory: Any = None) -> Any:
        return super().cursor(factory or Cursor)

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> Any:
        return self.cursor().executemany(sql, seq_of_parameters)

    def over(self) -> bool:
        return time.monotonic() - self.started > self.limit


class Cursor(sqlite3.Cursor):
    """Marks when each statement starts, for ``Connection``'s bound."""

    connection: Connection

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        self.connection.started = time.monotonic()
        return super().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> Any:
        self.connection.started = time.monotonic()
        return super().executemany(sql, seq_of_parameters)


# steps between two calls of the handler, about 15 ms here: rare enough that the handler, which takes the
# GIL, costs nothing, even to a statement sent from a second thread to run without it
PROGRESS_STEPS = 1_000_000


def bound(driver: Any, limit_ms: int) -> None:
    """Bound each statement of the connection ``driver`` to ``limit_ms`` (0: no bound) until ``unbound``."""
    if limit_ms and isinstance(driver, Connection):
        driver.limit, driver.started = limit_ms / 1000, time.monotonic()
        driver.set_progress_handler(driver.over, PROGRESS_STEPS)


def unbound(driver: Any) -> None:
    if isinstance(driver, Connection) and driver.limit:
        driver.limit = 0.0
        driver.set_progress_handler(None, 0)


SQLITE_NEEDED = (3, 35)  # RETURNING (3.35), UPDATE ... FROM (3.33)
