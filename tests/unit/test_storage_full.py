"""A write refused for lack of storage is told apart from other failures, on either database and on the
files' disk, and answered 507 with the envelope (``errors.unexpected``, what the Guard middleware and the
database handlers answer with)."""

from __future__ import annotations

import errno
import sqlite3

import orjson
import psycopg
import pytest
import sqlalchemy as sa

from procession.api import errors
from procession.store.db import storage_full


def sqlite_full() -> sqlite3.Error:
    """SQLite's own SQLITE_FULL: a database allowed one page, written past it."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("PRAGMA max_page_count = 2")
    with pytest.raises(sqlite3.OperationalError) as caught:
        conn.execute("INSERT INTO t VALUES (?)", ("x" * 100_000,))
    return caught.value


def wrapped(orig: BaseException) -> sa.exc.OperationalError:
    return sa.exc.OperationalError("INSERT …", {"secret": 1}, orig)


def test_storage_full_is_sqlites_full_postgresqls_disk_full_and_the_systems_no_space() -> None:
    assert storage_full(wrapped(sqlite_full()))
    assert storage_full(wrapped(psycopg.errors.DiskFull("could not extend file: No space left on device")))
    assert storage_full(OSError(errno.ENOSPC, "No space left on device"))
    assert storage_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    # as the SQLite writer reports a group whose transaction a full disk undid
    assert storage_full(
        sa.exc.OperationalError("the group's transaction was lost", None, wrapped(sqlite_full()))
    )


@pytest.mark.parametrize(
    "error",
    [
        wrapped(sqlite3.OperationalError("disk I/O error")),
        wrapped(psycopg.errors.QueryCanceled("canceling statement due to statement timeout")),
        OSError(errno.EACCES, "Permission denied"),
        RuntimeError("broken"),
    ],
)
def test_other_failures_are_not_storage_full(error: BaseException) -> None:
    assert not storage_full(error)


def test_a_full_disk_is_a_507_envelope_saying_so() -> None:
    reply = errors.unexpected(
        {"method": "POST", "path": "/v1/ext/photo"}, wrapped(psycopg.errors.DiskFull("x"))
    )
    assert reply.status_code == 507
    body = orjson.loads(bytes(reply.body))
    assert body["_data"] is None and body["_meta"] == {}
    assert [e["code"] for e in body["_errors"]] == ["storage_full"]
    assert "storage is full" in body["_errors"][0]["message"]
