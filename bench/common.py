"""What every benchmark needs: a fresh database, a free port, and child processes that are stopped on exit."""

from __future__ import annotations

import shutil
import socket
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"


@contextmanager
def fresh_database(
    backend: str, tmp: Path, pg_server: str = PG_SERVER, *, like: str | None = None
) -> Iterator[str]:
    """A new database's URL, gone on exit: a SQLite file in ``tmp``, or a PostgreSQL database on
    ``pg_server`` (created from its ``test`` database). ``like``: a copy of that database instead (same
    backend, nobody connected to it), so that runs compared with each other start from the same rows."""
    name = f"procession_bench_{uuid.uuid4().hex[:10]}"
    if backend == "sqlite":
        path = tmp / f"{name}.db"
        if like is not None:
            source = sa.make_url(like).database or ""
            with closing(sqlite3.connect(source)) as conn:  # the WAL into the file, so the copy is whole
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            shutil.copyfile(source, path)
        try:
            yield f"sqlite:///{path}"
        finally:
            for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                leftover.unlink(missing_ok=True)
        return
    server = sa.make_url(pg_server)
    template = f" TEMPLATE {sa.make_url(like).database}" if like is not None else ""
    admin = sa.create_engine(server.set(database="test"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}{template}")
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A subprocess writing to ``log``, stopped on exit (SIGTERM, then SIGKILL after 15 s)."""
    with log.open("ab") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


def wait_until(
    ready: Callable[[], Any], proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if ready():
                return
        except (httpx.TransportError, sa.exc.OperationalError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start (exit code {proc.poll()}):\n{tail(log)}")


@contextmanager
def serving(args: list[str], env: dict[str, str], log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A server command taking ``--port``: (base URL, process) once /healthz answers; stopped on exit."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with process([*args, "--port", str(port)], env, log) as proc:
        wait_until(lambda: httpx.get(f"{url}/healthz").status_code == 200, proc, " ".join(args[-1:]), log)
        yield url, proc
