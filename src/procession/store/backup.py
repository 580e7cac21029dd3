"""Backups while the service runs, and restores into a database no service uses.

SQLite: SQLite's online backup API, in steps of ``PAGES`` pages with a pause between them, from one read
transaction held for the whole copy: in WAL mode a reader never blocks a writer, and since every step reads
the same snapshot, writes committed meanwhile neither restart the copy nor tear it (a step that took its own
snapshot would start over after any other connection's commit, for ever under a busy bulk job). The copy is
written beside the target, checked (``PRAGMA quick_check``), turned into a single self-contained file
(rollback journal) and only then renamed to the target.

PostgreSQL: ``pg_dump --format=custom`` (one snapshot of the whole database, procrastinate's tables
included) and ``pg_restore --clean --if-exists --single-transaction``; both must be installed, of the
server's major version or newer.

A running ``procession serve`` on SQLite holds a shared lock on ``<database>.lock`` (``hold``); a restore
takes it exclusively, so it refuses while a server uses the database, and a server starting meanwhile waits
for the restore. On PostgreSQL a restore refuses while any other session is connected to the database.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

PAGES = 1024  # per step: 4 MiB of 4 KiB pages
PAUSE_S = 0.005  # between steps: other threads of this process (and the disk) get their turn


class BackupError(Exception):
    """The backup or the restore was not made (the message says why); nothing was changed."""


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL; None for PostgreSQL."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    if parsed.database in (None, "", ":memory:"):
        raise BackupError("a database in memory has nothing to back up")
    return Path(parsed.database)


def hold(url: str) -> IO[Any] | None:
    """SQLite: a shared lock on the database's lock file, held while the returned file stays open (by a
    running server); waits while a restore holds it. None on PostgreSQL."""
    if sa.make_url(url).database in (None, "", ":memory:"):
        return None
    path = sqlite_path(url)
    if path is None:
        return None
    lock = open(_lock_file(path), "a")  # noqa: SIM115 (held open for the server's life)
    fcntl.flock(lock, fcntl.LOCK_SH)
    return lock


def backup(url: str, target: Path, *, pages: int = PAGES, pause_s: float = PAUSE_S) -> dict[str, Any]:
    """Copy the database at ``url`` to ``target`` (a file), consistent, while it is in use: what was made."""
    started = time.monotonic()
    path = sqlite_path(url)
    if path is None:
        _pg("pg_dump", "--format=custom", "--no-owner", f"--file={target}", url=url)
    else:
        _sqlite_backup(path, target, pages, pause_s)
    return {"path": str(target), "bytes": target.stat().st_size, "seconds": time.monotonic() - started}


def restore(url: str, source: Path) -> str:
    """Replace the database at ``url`` by the backup ``source``; what was done. Refuses (``BackupError``)
    while a server uses it, or if ``source`` is not a backup."""
    if not source.is_file():
        raise BackupError(f"{source} is not a file")
    path = sqlite_path(url)
    if path is None:
        busy = _pg_sessions(url)
        if busy:
            raise BackupError(
                f"{busy} other session(s) are connected to the database: stop every `procession serve` and "
                "`procession worker` of it (and other clients) first"
            )
        _pg(
            "pg_restore", "--clean", "--if-exists", "--no-owner", "--single-transaction", str(source), url=url
        )
        return f"restored {source} into the PostgreSQL database (its objects dropped and created anew)"
    _check(source)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(_lock_file(path), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(
                f"a running `procession serve` uses {path}: stop it first (nothing was changed)"
            ) from None
        existed = path.exists()
        with _connect(source) as src, _connect(path) as dst:
            src.backup(dst)  # one step, one write transaction on the target: all of it, or none
        _check(path)
    replaced = "replacing what it held" if existed else "a new file"
    return f"restored {source} into {path} ({replaced}); the next start brings its schema up to date"


def _sqlite_backup(path: Path, target: Path, pages: int, pause_s: float) -> None:
    if not path.exists():
        raise BackupError(f"there is no database at {path}")
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    partial.unlink(missing_ok=True)
    try:
        with _connect(path) as src, _connect(partial) as dst:
            src.execute("BEGIN")  # one snapshot for every step: see the module's docstring
            src.execute("SELECT count(*) FROM sqlite_schema").fetchone()
            src.backup(dst, pages=pages, sleep=pause_s)
            src.execute("COMMIT")
            dst.execute("PRAGMA journal_mode=DELETE")  # one file, readable without its WAL
        _check(partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        yield conn
    finally:
        conn.close()


def _check(path: Path) -> None:
    """``path`` is a whole SQLite database of this service (its schema's version is recorded)."""
    try:
        with _connect(path) as conn:
            found = conn.execute("PRAGMA quick_check").fetchone()
            if found is None or found[0] != "ok":
                raise BackupError(f"{path} is damaged: {found}")
            conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError as e:
        raise BackupError(f"{path} is not a backup of this service: {e}") from None


def _lock_file(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _pg(program: str, *args: str, url: str) -> None:
    """Run ``pg_dump`` or ``pg_restore`` on the database at ``url`` (its password passed in the environment,
    never on the command line)."""
    if shutil.which(program) is None:
        raise BackupError(f"{program} is not installed (PostgreSQL's client tools, of the server's version)")
    parsed = sa.make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    dsn = parsed.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    done = subprocess.run([program, *args, f"--dbname={dsn}"], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError(f"{program} failed: {done.stderr.strip()[-2000:]}")


def _pg_sessions(url: str) -> int:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return int(
                conn.scalar(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
                or 0
            )
    finally:
        engine.dispose()
