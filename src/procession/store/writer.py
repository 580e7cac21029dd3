"""Short writes from request handlers: ``await writer.run(use_case, *args)`` runs ``use_case(uows, *args)``,
a service function that opens its units of work from ``uows`` and commits them as usual; its result comes
back once that is durable.

On PostgreSQL each call runs in the thread pool in transactions of its own. On SQLite, where writers take
turns anyway, the calls waiting at one moment run together in one transaction, each in a savepoint of its
own (group commit): a failure undoes that call's changes alone, and the pages they share (the tail of each
index, the counters) are written to the WAL once per group instead of once per call. Calls that arrive
while a group runs form the next group, so under light load a group is a single call and nothing waits
for company.

A group runs right on the event loop when the file's write lock is free: a group is short (a few hundred
µs a call), and a second Python thread would only add switches of the GIL. When another writer of this
process holds the lock (a background chunk), the group waits for it on a thread of its own instead, so the
event loop goes on serving reads.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool

from procession.store.sqlite import unbound, write_lock
from procession.store.uow import LOCK_TIMEOUT_S, WOKEN, SavepointLost, UnitsOfWork

T = TypeVar("T")
Call = tuple[Callable[[UnitsOfWork], Any], "asyncio.Future[Any]"]
MAX_GROUP = 64  # calls per transaction: bounds how long a group holds the event loop and the file


class Writer:
    def __init__(self, uows: UnitsOfWork) -> None:
        self.uows = uows
        self.engine = uows.engine
        self.lock = write_lock(self.engine)  # None unless a SQLite file: then calls are grouped
        self._waiting: list[Call] = []
        self._draining = False
        self._drainer: asyncio.Task[None] | None = None  # kept: the loop holds its tasks only weakly
        self._thread: ThreadPoolExecutor | None = None

    async def run(self, use_case: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self.lock is None:
            return await run_in_threadpool(use_case, self.uows, *args, **kwargs)
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        context = contextvars.copy_context()  # each call in its request's (its request id, for its tasks)
        self._waiting.append((lambda uows: context.run(use_case, uows, *args, **kwargs), done))
        if not self._draining:
            self._draining = True
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        return await done

    def close(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=True)

    async def _drain(self) -> None:
        """Run the waiting calls, a group at a time, until none waits; every call is answered."""
        group: list[Call] = []
        try:
            await asyncio.sleep(0)  # let the requests already read reach the queue: one group for all
            while self._waiting:
                group, self._waiting = self._waiting[:MAX_GROUP], self._waiting[MAX_GROUP:]
                try:
                    outcomes = await self._apply_soon(group)
                except Exception as e:  # the group could not start (the file, the lock): all fail
                    outcomes = [(False, e)] * len(group)
                for (_, done), (ok, value) in zip(group, outcomes, strict=True):
                    if not done.done():  # the request may have been cancelled meanwhile
                        done.set_result(value) if ok else done.set_exception(value)
                await asyncio.sleep(0)  # replies go out, new requests come in
        finally:
            self._draining = False
            for _, done in group + self._waiting:  # stopped midway (shutdown): no call hangs
                if not done.done():
                    done.set_exception(RuntimeError("the server is stopping"))
            self._waiting = []

    async def _apply_soon(self, group: list[Call]) -> list[tuple[bool, Any]]:
        """On the event loop if the file is free at once, in this process and in any other; else on a thread
        of its own, which waits for it."""
        assert self.lock is not None
        if self.lock.acquire(blocking=False):
            try:
                return self._apply(group, self.lock, wait=False)
            except _Busy:
                pass  # another process writes: wait for it off the event loop
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="procession-writer")
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._wait_and_apply, group)

    def _wait_and_apply(self, group: list[Call]) -> list[tuple[bool, Any]]:
        assert self.lock is not None
        # as UnitOfWork: after SQLite's busy timeout go on without the lock, SQLite still serialises writers
        return self._apply(group, self.lock if self.lock.acquire(timeout=LOCK_TIMEOUT_S) else None, wait=True)

    def _apply(self, group: list[Call], lock: threading.Lock | None, *, wait: bool) -> list[tuple[bool, Any]]:
        """One transaction for the group (``lock`` held, released here): each call's (True, result) or
        (False, exception). Without ``wait``, ``_Busy`` if another process holds the file."""
        try:
            with self.engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn:
                driver: Any = conn.connection.driver_connection
                if not wait:
                    driver.execute("PRAGMA busy_timeout = 0")
                try:
                    conn.begin()
                except sa.exc.OperationalError as e:
                    if wait or "locked" not in str(e.orig):
                        raise
                    raise _Busy from e
                finally:
                    if not wait:
                        driver.execute(f"PRAGMA busy_timeout = {LOCK_TIMEOUT_S * 1000}")
                self.uows.bound(conn)  # each call's statements, as a request's
                try:
                    return self._calls(conn, driver, group)
                finally:
                    unbound(driver)
        finally:
            if lock is not None:
                lock.release()

    def _calls(self, conn: sa.Connection, driver: Any, group: list[Call]) -> list[tuple[bool, Any]]:
        """The group's calls in the transaction open on ``conn``, each in a savepoint, then its commit."""
        outcomes: list[tuple[bool, Any]] = []
        conn.info.pop(WOKEN, None)  # left by a group whose commit failed
        nested = self.uows.nested(conn)
        for n, (work, _) in enumerate(group):
            try:
                outcomes.append((True, work(nested)))
            except Exception as e:
                outcomes.append((False, e))
                if isinstance(e, SavepointLost) or not driver.in_transaction:
                    # SQLite rolled the whole transaction back (disk full, I/O error), or a call's
                    # changes could not be undone: none of the group is kept, the rest is not run
                    lost = sa.exc.OperationalError("the group's transaction was lost", None, e)
                    conn.rollback()
                    rest = [(False, lost)] * (len(group) - n - 1)
                    return [(False, lost) if ok else (ok, v) for ok, v in outcomes] + rest
        try:
            conn.commit()
        except Exception as e:  # nothing of the group is kept
            return [(False, e) if ok else (ok, value) for ok, value in outcomes]
        self.uows.wake_committed(conn)
        return outcomes


class _Busy(Exception):
    """Another process holds the SQLite file's write lock."""
