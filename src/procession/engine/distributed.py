"""Scale-out on PostgreSQL: procrastinate carries wake-ups to ``procession worker`` processes on any machine.

Tasks are rows written with the work they do (nothing accepted is lost); a procrastinate job only says "run
task N", and ``run_task`` claims it with ``FOR UPDATE SKIP LOCKED`` in the transaction that runs it. Every
wake-up leases its task for a while; the periodic reconciler wakes the due tasks whose lease ran out (a
worker was killed, the database restarted, a wake-up was never sent) or that have none (due again after a
back-off). It runs in the workers (a procrastinate periodic task) and in ``procession serve`` (a thread,
``Reconciler``), so that tasks are woken however long every worker was gone.

Workers outlive their database. procrastinate's worker stops, and returns as if asked to, when one of its
side tasks fails: its listener reconnects once at once and fails while the database is still restarting,
and its heartbeat and periodic deferrer fail on a lost connection; a lost connection in its fetch loop is
raised. ``run_worker`` runs it in *sessions* (a new connection pool, whatever was left pending woken, a
worker until it stops) and starts a new session after any stop it did not ask for, with a back-off while
the database is away; it returns only once stopped by SIGINT/SIGTERM, and raises only what waiting cannot
fix (bad settings, a missing table).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import procrastinate
import procrastinate.worker
import psycopg
import sqlalchemy as sa

from procession.domain.clock import now_ms
from procession.engine.retry import Lost, retry, retry_async
from procession.engine.tasks import Kinds, run_task
from procession.store.tasks import Queue
from procession.store.uow import UnitsOfWork

log = logging.getLogger("procession.engine")
QUEUE = "procession"
TASK = "procession:run_task"
RECONCILE_SECONDS = 5.0  # the reconciler's round, in the workers and in the serve process
PING_TIMEOUT = 5  # seconds a session's first connection may take
POOL_TIMEOUT = 5.0  # seconds a worker's procrastinate query waits for a connection before it fails
HEALTHY_SECONDS = 30.0  # a worker session that ran this long before it failed starts the back-off over
Leased = Callable[[Queue, int], list[int]]


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


def lease(uows: UnitsOfWork, leased: Leased) -> list[int]:
    """The tasks ``leased(queue, now)`` leases, in its own transaction."""
    with uows.engine.begin() as conn:
        return leased(Queue(conn), now_ms())


def _jobs(ids: list[int]) -> list[dict[str, Any]]:
    """The arguments of one ``run_task`` job per task."""
    return [{"task_id": i} for i in ids]


def wake(app: procrastinate.App, uows: UnitsOfWork, leased: Leased) -> None:
    """Defer one procrastinate job per task that ``leased(queue, now)`` leases (in its own transaction)."""
    ids = lease(uows, leased)
    if ids:
        app.tasks[TASK].batch_defer(*_jobs(ids))
        log.info("woke %d task(s)", len(ids))


async def wake_async(app: procrastinate.App, uows: UnitsOfWork, leased: Leased) -> None:
    """``wake`` on an event loop (the lease on a thread)."""
    ids = await asyncio.to_thread(lease, uows, leased)
    if ids:
        await app.tasks[TASK].batch_defer_async(*_jobs(ids))
        log.info("woke %d task(s)", len(ids))


class DistributedWaker:
    """Once tasks are committed, defer a procrastinate job for each that may run: on the API side (``serve``,
    which opens the app), and in workers, for the tasks their own tasks add (a bulk chunk's automation runs:
    the worker's app, open while a session runs)."""

    def __init__(self, uows: UnitsOfWork, url: str, lease_ms: int, *, open_app: bool = True) -> None:
        self.uows, self.app, self.lease_ms = uows, make_app(url), lease_ms
        if open_app:
            self.app.open()

    def wake(self, kind: str, ref: str) -> None:
        try:
            wake(self.app, self.uows, lambda q, now: q.lease_of(kind, ref, now, self.lease_ms))
        except Exception:  # the reconciler wakes them once their lease is over
            log.exception("could not wake %s %s; the reconciler will", kind, ref)

    def wake_at(self, task_id: int, at: int) -> None:
        """Task ``task_id`` is due at ``at``: woken then by a timer of this process (the reconciler's round,
        which wakes it if this process is gone by then, is coarser)."""
        timer = threading.Timer(max(0.0, (at - now_ms()) / 1000), self._wake_task, args=(task_id,))
        timer.daemon = True
        timer.start()

    def _wake_task(self, task_id: int) -> None:
        try:
            wake(self.app, self.uows, lambda q, now: q.lease_task(task_id, now, self.lease_ms))
        except Exception:  # the reconciler wakes it once due
            log.exception("could not wake task %s; the reconciler will", task_id)

    def reconcile(self) -> None:
        """Wake the due tasks whose lease ran out, or that have none (the reconciler's round)."""
        wake(self.app, self.uows, lambda q, now: q.lease_due(now, self.lease_ms))

    def stop(self) -> None:
        self.app.close()


class Reconciler:
    """The reconciler in the serve process (PostgreSQL): every ``every`` seconds, the waker's ``reconcile``,
    riding out a lost database with the back-off; so tasks are woken even after every worker was gone for a
    while and came back."""

    def __init__(self, waker: DistributedWaker, *, every: float = RECONCILE_SECONDS) -> None:
        self.waker, self.every = waker, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="procession-reconciler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                retry(self.waker.reconcile, what="reconciler", stop=self._stop)
            except Exception:  # not the database away: said, and tried again next round
                log.exception("reconciler: could not wake due tasks")


class _Worker(procrastinate.worker.Worker):
    """procrastinate's worker, keeping why it stopped: a side task (the listener, the heartbeat, the periodic
    deferrer) that fails stops it (its error logged) as if it had been asked to."""

    failure: BaseException | None = None

    async def _monitor_side_tasks(self, side_tasks: list[asyncio.Task[Any]]) -> None:
        await super()._monitor_side_tasks(side_tasks)
        for task in side_tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                self.failure = task.exception()
                return


class WorkerLoop:
    """A procrastinate worker run in sessions until SIGINT/SIGTERM (see the module's docstring)."""

    def __init__(self, uows: UnitsOfWork, kinds: Kinds, url: str, *, concurrency: int, lease_ms: int) -> None:
        self.uows, self.url, self.concurrency, self.lease_ms = uows, url, concurrency, lease_ms
        self.app = make_app(url)
        self.context = {"procession": Context(uows, kinds, lease_ms)}
        self.stopping = asyncio.Event()
        self.worker: _Worker | None = None
        self.sessions = 0

    def stop(self) -> None:
        """Stop: the running worker finishes its jobs; no new session starts."""
        if not self.stopping.is_set():
            log.info("procession worker: stopping")
        self.stopping.set()
        if self.worker is not None:
            self.worker.stop()

    async def run(self) -> None:
        loop, signals = asyncio.get_running_loop(), (signal.SIGINT, signal.SIGTERM)
        before = {signum: signal.getsignal(signum) for signum in signals}
        for signum in signals:
            loop.add_signal_handler(signum, self.stop)
        try:
            await retry_async(
                self.session, what="procession worker", stop=self.stopping, reset_after=HEALTHY_SECONDS
            )
        finally:
            for signum, handler in before.items():
                loop.remove_signal_handler(signum)
                signal.signal(signum, handler)

    async def session(self) -> None:
        """One session: a new connection pool, whatever was left pending woken, a worker until it stops.
        Returns once stopped; raises if the worker stopped by itself (its failure, or ``Lost``)."""
        await self._ping()  # fails at once while the database is away
        if self.stopping.is_set():
            return
        connector = procrastinate.PsycopgConnector(conninfo=conninfo(self.url), timeout=POOL_TIMEOUT)
        with self.app.replace_connector(connector):
            try:
                await asyncio.wait_for(connector.open_async(), 2 * POOL_TIMEOUT)
                # whatever was left pending: a killed worker's, or woken while no worker listened
                await wake_async(self.app, self.uows, lambda q, now: q.lease_due(now, self.lease_ms))
                if self.stopping.is_set():
                    return
                self.sessions += 1
                if self.sessions > 1:
                    log.warning("procession worker: database reachable again: session %d", self.sessions)
                worker = self.worker = _Worker(
                    app=self.app,
                    queues=[QUEUE],
                    concurrency=self.concurrency,
                    name="procession-worker",
                    delete_jobs="successful",
                    additional_context=self.context,
                    install_signal_handlers=False,  # ours stop the worker and the sessions
                )
                try:
                    await worker.run()
                finally:
                    self.worker = None
            finally:
                await _close(connector)
        if self.stopping.is_set():
            return
        if worker.failure is not None:
            raise worker.failure
        raise Lost("the procrastinate worker stopped by itself")

    async def _ping(self) -> None:
        """A connection of its own (on the event loop, bounded: SIGTERM never waits long for it)."""
        connect = psycopg.AsyncConnection.connect(conninfo(self.url), connect_timeout=PING_TIMEOUT)
        async with await asyncio.wait_for(connect, PING_TIMEOUT + 1) as conn:
            await conn.execute("SELECT 1")


async def _close(connector: procrastinate.PsycopgConnector) -> None:
    try:
        await asyncio.wait_for(connector.close_async(), 2 * POOL_TIMEOUT)
    except Exception as e:  # a pool of lost connections: nothing more to do with it
        log.debug("closing a worker's pool: %r", e)


def run_worker(uows: UnitsOfWork, kinds: Kinds, url: str, *, concurrency: int, lease_ms: int) -> None:
    """Run a procrastinate worker for this database until it is stopped (SIGINT/SIGTERM), through any number
    of database restarts; raises only what waiting does not fix."""

    uows.waker = DistributedWaker(uows, url, lease_ms, open_app=False)  # wakes the tasks its tasks add

    async def main() -> None:
        await WorkerLoop(uows, kinds, url, concurrency=concurrency, lease_ms=lease_ms).run()

    asyncio.run(main())


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
