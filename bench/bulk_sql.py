"""The database's own limit for a bulk update's row writes, for ``bulk.py``: plain SQL, no application logic.

The same rows the application writes for one entry: a ``job_entries`` row at submission; then, 1,000 entries
per transaction, the process (3 JSON keys merged into ``data``, ``state_id``, ``updated_at``, ``version``),
one ``events`` row (two, to compare with what the application writes for a state change: see ``rows``) and
the entry marked SUCCESS. Each database in its fastest form (/work/shared/
PERFORMANCE.md): SQLite plain ``executemany`` inside ``BEGIN IMMEDIATE`` with ``json_set``; PostgreSQL one
statement per batch over ``unnest`` of binary arrays (JSON as ``text[]`` cast to ``jsonb``) with
``data || patch``, prepared.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg

from procession.store.sqlite import SQLITE_PRAGMAS

BATCH = 1000
WRITTEN = ("score", "city", "source")  # the attributes every entry writes, in this order


@dataclass(frozen=True)
class Target:
    """Where the rows go: ids the application resolves from shortIds."""

    team_id: str
    procedure_id: str
    attributes: dict[str, str]  # shortId -> attribute id
    states: dict[str, str]  # shortId -> state id


@dataclass(frozen=True)
class Row:
    """One entry, already in stored form (parameters are built before the clock starts)."""

    idx: int
    pk: str
    patch: dict[str, Any]  # attribute id -> value
    state: str  # state id
    item: dict[str, Any]  # the entry as submitted
    change: dict[str, Any]  # what the job stores to apply
    events: list[tuple[str, dict[str, Any]]]  # the events' types and payloads


def rows(target: Target, entries: list[dict[str, Any]], events: int = 1) -> list[Row]:
    """The stored form of bulk-update entries ``{"lead_id", "data", "state"}``, with one event each
    (``process.updated``) or, given ``events=2``, a ``process.state_changed`` too, as the application writes
    for a state change."""
    out = []
    for idx, entry in enumerate(entries):
        patch = {target.attributes[k]: v for k, v in entry["data"].items()}
        state = target.states[entry["state"]]
        out.append(
            Row(
                idx=idx,
                pk=entry["lead_id"],
                patch=patch,
                state=state,
                item=entry,
                change={"data": patch, "state": state, "pk": entry["lead_id"]},
                events=[
                    (
                        "process.updated",
                        {"changes": {**{f"data.{k}": v for k, v in patch.items()}, "state": state}},
                    ),
                    ("process.state_changed", {"from": state, "to": state}),  # the size of one
                ][:events],
            )
        )
    return out


def _batches(items: list[Row]) -> Iterator[list[Row]]:
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]


def _clock() -> int:
    """Now, in ms: read per batch, as the application reads it per chunk. Processes are written with it in
    ``updated_at``, which four indexes hold: one time for a whole run would put each batch's new index
    entries among the earlier batches' at random pages, instead of after them (five times the pages)."""
    return int(time.time() * 1000)


def _job_row(target: Target, job_id: str, n: int, now: int) -> tuple[Any, ...]:
    chunks = (n + BATCH - 1) // BATCH
    return (job_id, target.team_id, target.procedure_id, "update", "IN_PROGRESS", n, chunks, 0, False, now)


JOB_SQL = (
    "INSERT INTO jobs (id, team_id, procedure_id, kind, status, total, chunks_total, chunks_done, failed, "
    "created_at) VALUES ({})"
)


# SQLite ------------------------------------------------------------------------------------------------


def _sqlite(path: Path) -> sqlite3.Connection:
    """A connection set up as the application's (the same pragmas: WAL, page cache, memory map, …)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    for pragma in SQLITE_PRAGMAS:
        conn.execute(f"PRAGMA {pragma}")
    return conn


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextmanager
def _checkpointer(path: Path, enabled: bool) -> Iterator[None]:
    """Optionally, a second connection running ``wal_checkpoint(PASSIVE)`` in the background."""
    if not enabled:
        yield
        return
    stop = threading.Event()

    def loop() -> None:
        conn = _sqlite(path)
        try:
            while not stop.wait(0.05):
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()

    thread = threading.Thread(target=loop, name="checkpointer", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


def sqlite_limit(
    path: Path, target: Target, entries: list[dict[str, Any]], *, checkpointer: bool, events: int = 1
) -> float:
    """Seconds to write ``entries`` (insert the job's entries, then apply them) with plain SQL."""
    items, job_id, now = rows(target, entries, events), str(uuid.uuid4()), _clock()
    inserts = [
        [(job_id, r.idx, orjson.dumps(r.item).decode(), orjson.dumps(r.change).decode()) for r in batch]
        for batch in _batches(items)
    ]
    paths = [f'$."{target.attributes[k]}"' for k in WRITTEN]
    merge = ", ".join("?, ?" for _ in WRITTEN)
    lookup = "SELECT pk_value, id FROM processes WHERE procedure_id = ? AND pk_value IN ({})"
    conn = _sqlite(path)
    if checkpointer:
        conn.execute("PRAGMA wal_autocheckpoint=0")  # the background connection checkpoints instead
    try:
        with _checkpointer(path, checkpointer):
            start = time.perf_counter()
            with _immediate(conn):
                conn.execute(JOB_SQL.format(", ".join("?" * 10)), _job_row(target, job_id, len(items), now))
            for params in inserts:
                with _immediate(conn):
                    conn.executemany(
                        "INSERT INTO job_entries (job_id, idx, status, item, change) "
                        "VALUES (?, ?, 'NOT_STARTED', ?, ?)",
                        params,
                    )
            for batch in _batches(items):
                with _immediate(conn):
                    now = _clock()
                    pks = [r.pk for r in batch]
                    query = lookup.format(", ".join("?" * len(pks)))
                    ids = dict(conn.execute(query, [target.procedure_id, *pks]).fetchall())
                    conn.executemany(
                        f"UPDATE processes SET data = json_set(data, {merge}), state_id = ?, updated_at = ?, "
                        "version = version + 1 WHERE id = ?",
                        [
                            (
                                *(
                                    v
                                    for p, k in zip(paths, WRITTEN, strict=True)
                                    for v in (p, r.item["data"][k])
                                ),
                                r.state,
                                now,
                                ids[r.pk],
                            )
                            for r in batch
                        ],
                    )
                    conn.executemany(
                        "INSERT INTO events (team_id, process_id, type, actor, payload, created_at) "
                        "VALUES (?, ?, ?, NULL, ?, ?)",
                        [
                            (target.team_id, ids[r.pk], kind, orjson.dumps(payload).decode(), now)
                            for r in batch
                            for kind, payload in r.events
                        ],
                    )
                    conn.executemany(
                        "UPDATE job_entries SET status = 'SUCCESS', process_id = ? WHERE job_id = ? AND idx = ?",
                        [(ids[r.pk], job_id, r.idx) for r in batch],
                    )
            elapsed = time.perf_counter() - start
        done = conn.execute(
            "SELECT count(*) FROM job_entries WHERE job_id = ? AND status = 'SUCCESS'", (job_id,)
        ).fetchone()[0]
    finally:
        conn.close()
    if done != len(items):
        raise RuntimeError(f"plain SQL on SQLite marked {done} of {len(items)} entries SUCCESS")
    return elapsed


# PostgreSQL --------------------------------------------------------------------------------------------

PG_INSERT = (
    "INSERT INTO job_entries (job_id, idx, status, item, change) "
    "SELECT %s, u.idx, 'NOT_STARTED', u.item::jsonb, u.change::jsonb "
    "FROM unnest(%b::int[], %b::text[], %b::text[]) AS u(idx, item, change)"
)
PG_APPLY = """
WITH u AS (
    SELECT u.idx, u.pk, u.patch::jsonb AS patch, u.state
    FROM unnest(%b::int[], %b::text[], %b::text[], %b::text[]) AS u(idx, pk, patch, state)
), upd AS (
    UPDATE processes AS p
    SET data = p.data || u.patch, state_id = u.state, updated_at = %s, version = p.version + 1
    FROM u WHERE p.procedure_id = %s AND p.pk_value = u.pk
    RETURNING p.id, u.idx
), ev AS (
    INSERT INTO events (team_id, process_id, type, actor, payload, created_at)
    SELECT %s, upd.id, v.type, NULL, v.payload::jsonb, %s
    FROM unnest(%b::int[], %b::text[], %b::text[]) AS v(idx, type, payload) JOIN upd ON upd.idx = v.idx
)
UPDATE job_entries AS e SET status = 'SUCCESS', process_id = upd.id
FROM upd WHERE e.job_id = %s AND e.idx BETWEEN %s AND %s AND e.idx = upd.idx
"""


def _json_text(values: list[Any]) -> list[str]:
    """JSON as text, cast to ``jsonb`` in the statement: several times faster to send than ``Jsonb``."""
    return [orjson.dumps(v).decode() for v in values]


def postgres_limit(conninfo: str, target: Target, entries: list[dict[str, Any]], *, events: int = 1) -> float:
    """Seconds to write ``entries`` (insert the job's entries, then apply them) with plain SQL."""
    items, job_id, now = rows(target, entries, events), str(uuid.uuid4()), _clock()
    batches = list(_batches(items))
    with psycopg.connect(conninfo, autocommit=True) as conn:
        cur = conn.cursor()
        start = time.perf_counter()
        with conn.transaction():
            cur.execute(JOB_SQL.format(", ".join(["%s"] * 10)), _job_row(target, job_id, len(items), now))
        for batch in batches:
            with conn.transaction():
                cur.execute(
                    PG_INSERT,
                    [
                        job_id,
                        [r.idx for r in batch],
                        _json_text([r.item for r in batch]),
                        _json_text([r.change for r in batch]),
                    ],
                    prepare=True,
                )
        for batch in batches:
            with conn.transaction():
                now = _clock()
                cur.execute(
                    PG_APPLY,
                    [
                        [r.idx for r in batch],
                        [r.pk for r in batch],
                        _json_text([r.patch for r in batch]),
                        [r.state for r in batch],
                        now,
                        target.procedure_id,
                        target.team_id,
                        now,
                        [r.idx for r in batch for _ in r.events],
                        [kind for r in batch for kind, _ in r.events],
                        _json_text([payload for r in batch for _, payload in r.events]),
                        job_id,
                        batch[0].idx,
                        batch[-1].idx,
                    ],
                    prepare=True,
                )
        elapsed = time.perf_counter() - start
        cur.execute("SELECT count(*) FROM job_entries WHERE job_id = %s AND status = 'SUCCESS'", [job_id])
        row = cur.fetchone()
    done = row[0] if row else 0
    if done != len(items):
        raise RuntimeError(f"plain SQL on PostgreSQL marked {done} of {len(items)} entries SUCCESS")
    return elapsed
