"""Scale-out on PostgreSQL: procrastinate carries wake-ups to ``procession worker`` processes on any machine.

Tasks are rows written with the work they do (nothing accepted is lost); a procrastinate job only says "run
task N", and ``run_task`` claims it with ``FOR UPDATE SKIP LOCKED`` in the transaction that runs it. Every
wake-up leases its task for a while; the periodic reconciler wakes the due tasks whose lease ran out (a
worker was killed, the database restarted, a wake-up was never sent) or that have none (due again after a
back-off).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache

import procrastinate
import sqlalchemy as sa

from procession.domain.clock import now_ms
from procession.engine.tasks import Kinds, run_task
from procession.store.tasks import Queue
from procession.store.uow import UnitsOfWork

log = logging.getLogger("procession.engine")
QUEUE = "procession"
TASK = "procession:run_task"


def conninfo(url: str) -> str:
    """A libpq URL from a SQLAlchemy one."""
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass
class Context:
    """What the worker's procrastinate tasks work with (procrastinate's ``additional_context``)."""

    uows: UnitsOfWork
    kinds: Kinds
    lease_ms: int


@cache
def make_app(url: str) -> procrastinate.App:
    """The procrastinate app for ``url`` (one per process: registering the tasks twice would rename them)."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo(url)))
    tasks = procrastinate.Blueprint()

    @tasks.task(name="run_task", queue=QUEUE, pass_context=True)
    def run_task_job(context: procrastinate.JobContext, task_id: int) -> None:
        ctx: Context = context.additional_context["procession"]
        try:
            run_task(ctx.uows, ctx.kinds, task_id)
        finally:  # done, failed for good or due again later: the tasks of its lane it held back
            wake(app, ctx.uows, lambda q, now: q.lease_lane(task_id, now, ctx.lease_ms))

    @tasks.periodic(cron="* * * * * */5", periodic_id="reconcile")  # croniter: seconds last
    @tasks.task(name="reconcile", queue=QUEUE, pass_context=True)
    def reconcile(context: procrastinate.JobContext, timestamp: int) -> None:
        ctx: Context = context.additional_context["procession"]
        wake(app, ctx.uows, lambda q, now: q.lease_due(now, ctx.lease_ms))

    app.add_tasks_from(tasks, namespace="procession")
    return app


def wake(app: procrastinate.App, uows: UnitsOfWork, leased: object) -> None:
    """Defer one procrastinate job per task that ``leased(queue, now)`` leases (in its own transaction)."""
    with uows.engine.begin() as conn:
        ids = leased(Queue(conn), now_ms())  # type: ignore[operator]
    if ids:
        app.tasks[TASK].batch_defer(*({"task_id": i} for i in ids))
        log.info("woke %d task(s)", len(ids))


class DistributedWaker:
    """The API side: once tasks are committed, defer a procrastinate job for each that may run."""

    def __init__(self, uows: UnitsOfWork, url: str, lease_ms: int) -> None:
        self.uows, self.app, self.lease_ms = uows, make_app(url), lease_ms
        self.app.open()

    def wake(self, kind: str, ref: str) -> None:
        try:
            wake(self.app, self.uows, lambda q, now: q.lease_of(kind, ref, now, self.lease_ms))
        except Exception:  # the reconciler wakes them once their lease is over
            log.exception("could not wake %s %s; the reconciler will", kind, ref)

    def stop(self) -> None:
        self.app.close()


def run_worker(uows: UnitsOfWork, kinds: Kinds, url: str, *, concurrency: int, lease_ms: int) -> None:
    """Run a procrastinate worker for this database until it is stopped (SIGINT/SIGTERM)."""
    app = make_app(url)
    context = {"procession": Context(uows, kinds, lease_ms)}
    with app.open():
        wake(app, uows, lambda q, now: q.lease_due(now, lease_ms))  # whatever was left pending
    app.run_worker(
        queues=[QUEUE],
        concurrency=concurrency,
        name="procession-worker",
        delete_jobs="successful",
        additional_context=context,
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
