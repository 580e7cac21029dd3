"""Scale-out on PostgreSQL: procrastinate carries wake-ups to ``procession worker`` processes on any machine.

The job's chunks are rows written with the job (nothing accepted is lost); a procrastinate task per chunk only
says "apply this chunk", and ``run_chunk`` claims it with ``FOR UPDATE SKIP LOCKED`` in the transaction that
applies it. The periodic reconciler re-defers chunks whose wake-up lease expired: a worker was killed, the
database restarted, or a wake-up was never sent.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

import procrastinate
import sqlalchemy as sa

from procession.engine.chunks import run_chunk
from procession.services.common import now_ms
from procession.store import tables as t
from procession.store.jobs import Queue, waits_its_turn

log = logging.getLogger("procession.engine")
QUEUE = "procession"
tasks = procrastinate.Blueprint()
_engine: sa.Engine | None = None
LEASE_MS = 30_000


def conninfo(url: str) -> str:
    """A libpq URL from a SQLAlchemy one."""
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@cache
def make_app(url: str) -> procrastinate.App:
    """The procrastinate app for ``url`` (one per process: registering the tasks twice would rename them)."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo(url)))
    app.add_tasks_from(tasks, namespace="procession")
    return app


@tasks.task(name="run_chunk", queue=QUEUE, pass_context=False)
def run_chunk_task(job_id: str, chunk_no: int) -> None:
    assert _engine is not None, "the worker sets the engine before it runs tasks"
    try:
        run_chunk(_engine, job_id, chunk_no)
    finally:  # once it is done, applied or failed for good, the chunks that waited for it
        with _engine.connect() as conn:
            defer_chunks(run_chunk_task, Queue(conn).unblocked_by(job_id, chunk_no))


@tasks.periodic(cron="* * * * * */5", periodic_id="reconcile")  # croniter: seconds last
@tasks.task(name="reconcile", queue=QUEUE, pass_context=False)
def reconcile_task(timestamp: int) -> None:
    assert _engine is not None
    defer_chunks(run_chunk_task, due_chunks(_engine, LEASE_MS))


def due_chunks(engine: sa.Engine, lease_ms: int) -> list[tuple[str, int]]:
    with engine.begin() as conn:
        return Queue(conn).due(now_ms(), lease_ms)


def defer_chunks(task: Any, chunks: list[tuple[str, int]]) -> None:
    if chunks:
        task.batch_defer(*({"job_id": j, "chunk_no": n} for j, n in chunks))
        log.info("woke %d chunk(s)", len(chunks))


class DistributedWaker:
    """The API side: after a job commits, defer one procrastinate task per pending chunk."""

    def __init__(self, engine: sa.Engine, url: str) -> None:
        self.engine, self.app = engine, make_app(url)
        self.app.open()

    def wake(self, job_id: str) -> None:
        c = t.job_chunks.c
        with self.engine.connect() as conn:
            numbers = conn.scalars(
                sa.select(c.chunk_no).where(c.job_id == job_id, c.status == "PENDING", ~waits_its_turn())
            ).all()
        try:
            defer_chunks(self.app.tasks["procession:run_chunk"], [(job_id, n) for n in numbers])
        except Exception:  # the reconciler wakes them after the lease
            log.exception("could not defer job %s; the reconciler will", job_id)

    def stop(self) -> None:
        self.app.close()


def run_worker(engine: sa.Engine, url: str, *, concurrency: int = 1, lease_ms: int = LEASE_MS) -> None:
    """Run a procrastinate worker for this database until it is stopped (SIGINT/SIGTERM)."""
    global _engine, LEASE_MS
    _engine, LEASE_MS = engine, lease_ms
    app = make_app(url)
    with app.open():
        defer_chunks(app.tasks["procession:run_chunk"], due_chunks(engine, lease_ms))
    app.run_worker(
        queues=[QUEUE], concurrency=concurrency, name="procession-worker", delete_jobs="successful"
    )


def apply_schema(url: str) -> None:
    """Create procrastinate's tables once (its own schema, managed by procrastinate)."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        exists = conn.scalar(sa.text("SELECT to_regclass('procrastinate_jobs') IS NOT NULL"))
    engine.dispose()
    if not exists:
        app = make_app(url)
        with app.open():
            app.schema_manager.apply_schema()
