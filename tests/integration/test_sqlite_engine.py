"""The SQLite engine: the SQLite it needs, and its WAL copied into the database file by the ``Checkpointer``
thread, not by the writers (while it runs, they never checkpoint themselves), or at once by ``checkpoint``."""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest
import sqlalchemy as sa

from procession.store.db import make_engine
from procession.store.sqlite import Checkpointer, checkpoint


def threshold(engine: sa.Engine) -> int:
    """The WAL's size in pages past which a writer's commit checkpoints it (0: never)."""
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one())


@pytest.mark.parametrize("first_connection_lost", [False, True])
def test_the_checkpointer_copies_the_wal_into_the_file(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    first_connection_lost: bool,
) -> None:
    """Also when its first connection fails: writers leave the WAL to it, so it tries again."""
    path = tmp_path / "c.db"
    engine = make_engine(f"sqlite:///{path}")
    real, lost = engine.connect, []

    def connect() -> sa.Connection:
        if (
            first_connection_lost
            and threading.current_thread().name == "procession-checkpointer"
            and not lost
        ):
            lost.append(True)
            raise sa.exc.OperationalError("connect", None, Exception("unable to open database file"))
        return real()

    monkeypatch.setattr(engine, "connect", connect)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (v TEXT)")
        with engine.begin() as conn:  # about 500 pages: below the writers' own checkpoint (4,000)
            conn.exec_driver_sql(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) "
                "INSERT INTO t SELECT hex(randomblob(2000)) FROM n"
            )
        before = path.stat().st_size
        keeper = sqlite3.connect(path)  # open throughout: the last connection to close would checkpoint too
        keeper.execute("SELECT count(*) FROM t").fetchall()  # (open once it has read)
        checkpointer = Checkpointer(engine, interval=0.01)
        assert threshold(engine) == 4000  # a writer past it checkpoints itself
        checkpointer.start()
        try:
            assert threshold(engine) == 0  # writers leave it to the checkpointer, however much they write
            deadline = time.monotonic() + 5
            while path.stat().st_size <= before and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            checkpointer.stop()
        assert path.stat().st_size > before + 1_000_000  # the rows reached the database file
        keeper.close()
        assert threshold(engine) == 4000
        assert lost == ["checkpointer: will retry" in caplog.text] * first_connection_lost
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM t")).scalar_one() == 500
    finally:
        engine.dispose()


def test_an_sqlite_too_old_for_the_statements_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")
    with pytest.raises(RuntimeError, match=r"SQLite 3\.35 or later is needed; this Python has 3\.31\.1"):
        make_engine(f"sqlite:///{tmp_path / 'old.db'}")


def in_the_file(path: Path) -> list[tuple[str]]:
    """The rows of table ``t`` in the database file itself, whatever the WAL holds."""
    with closing(sqlite3.connect(f"file:{path}?immutable=1", uri=True)) as conn:
        try:
            return conn.execute("SELECT v FROM t").fetchall()
        except sqlite3.OperationalError:  # no such table, yet
            return []


def test_a_checkpoint_copies_the_wal_into_the_file_after_one_under_way(tmp_path: Path) -> None:
    """SQLite answers "busy" to a checkpoint while another is under way (such as the ``Checkpointer``'s)
    instead of waiting: ``checkpoint`` asks again until it has copied the WAL. Here the other one is a FULL
    checkpoint, which holds the checkpoint lock while it waits for a writer to finish."""
    path = tmp_path / "w.db"
    engine = make_engine(f"sqlite:///{path}")
    writer, other = (
        sqlite3.connect(path, isolation_level=None, timeout=10, check_same_thread=False) for _ in range(2)
    )
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (v TEXT)")
            conn.exec_driver_sql("INSERT INTO t VALUES ('x')")
        assert in_the_file(path) == []  # in the WAL only
        writer.execute("BEGIN IMMEDIATE")
        asked = threading.Event()
        other.set_trace_callback(lambda _: asked.set())
        full = threading.Thread(target=other.execute, args=("PRAGMA wal_checkpoint(FULL)",))
        full.start()
        try:  # a FULL checkpoint ends at once unless it holds the checkpoint lock, waiting for the writer
            assert asked.wait(5)
            time.sleep(0.05)
            assert full.is_alive()
        except BaseException:
            writer.execute("ROLLBACK")
            full.join(5)
            raise
        release = threading.Timer(0.3, writer.execute, args=("ROLLBACK",))  # then the FULL one goes on
        release.start()
        try:
            started = time.monotonic()
            checkpoint(engine)
            assert time.monotonic() - started >= 0.25  # it waited for the other checkpoint to end
            assert in_the_file(path) == [("x",)]
        finally:  # both connections idle before they close
            release.join(5)
            full.join(5)
    finally:
        for conn in (writer, other):
            conn.close()
        engine.dispose()


def _temporary_files() -> list[str]:
    """SQLite's temporary files this process holds open (``etilqs_…``, unlinked once opened)."""
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            found.append(str(fd.readlink()))
        except OSError:  # closed meanwhile
            continue
    return [f for f in found if "etilqs_" in f]


def test_a_statement_journal_is_kept_in_memory(tmp_path: Path) -> None:
    """A statement on a table with triggers (text search's) journals the pages it changes, to undo itself
    alone on error: in memory, not in a temporary file written for each row of a bulk chunk."""
    engine = make_engine(f"sqlite:///{tmp_path / 'j.db'}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (v TEXT NOT NULL)")
            conn.exec_driver_sql("CREATE TABLE noted (k INTEGER PRIMARY KEY)")
            conn.exec_driver_sql(
                "CREATE TRIGGER t_noted AFTER UPDATE ON t BEGIN INSERT OR IGNORE INTO noted VALUES (old.rowid); END"
            )
            conn.exec_driver_sql(  # about 250 pages: past what a journal keeps in memory by default (64 KiB)
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) "
                "INSERT INTO t SELECT hex(randomblob(2000)) FROM n"
            )
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE t SET v = v || 'x'")
            assert conn.exec_driver_sql("SELECT count(*) FROM noted").scalar_one() == 500
            assert _temporary_files() == []
    finally:
        engine.dispose()
