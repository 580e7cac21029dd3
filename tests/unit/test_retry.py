"""Riding out a lost database (``engine.retry``) and the worker's sessions (``engine.distributed``), without a
database: connect functions that fail, then succeed; stop events; what counts as a lost connection."""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import procrastinate.exceptions
import psycopg
import psycopg_pool
import pytest
import sqlalchemy as sa

from procession.engine import distributed
from procession.engine.distributed import WorkerLoop
from procession.engine.retry import Backoff, Lost, is_connection_error, retry, retry_async
from procession.engine.tasks import Kinds


def failing(times: int, error: Callable[[], BaseException] = lambda: psycopg.OperationalError("refused")):
    """A connect function that raises ``error()`` ``times`` times, then returns "up"; and its calls."""
    calls: list[float] = []

    def connect() -> str:
        calls.append(time.monotonic())
        if len(calls) <= times:
            raise error()
        return "up"

    return connect, calls


def caused(outer: BaseException, inner: BaseException) -> BaseException:
    outer.__cause__ = inner
    return outer


class Recorded(Backoff):
    def __init__(self, first: float, cap: float) -> None:
        super().__init__(first, cap)
        self.given: list[float] = []

    def next(self) -> float:
        self.given.append(super().next())
        return self.given[-1]


def test_a_connect_failing_n_times_is_retried_with_growing_delays(caplog: pytest.LogCaptureFixture) -> None:
    connect, calls = failing(7)
    pauses: list[float] = []
    with caplog.at_level(logging.WARNING, logger="procession.engine"):
        assert retry(connect, what="test", wait=lambda delay: bool(pauses.append(delay))) == "up"
    assert len(calls) == 8
    assert pauses == [0.5, 1, 2, 4, 8, 10, 10]  # doubling from 0.5 s, at most 10 s
    lines = [r.getMessage() for r in caplog.records]
    assert sum("database unreachable" in line for line in lines) == 7  # a line per attempt
    assert "attempt 7 failed, next in 10.0 s" in lines[6] and "reachable again" in lines[-1]


def test_real_pauses_grow_and_a_stop_event_ends_the_retrying() -> None:
    connect, calls = failing(10**9)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    began = time.monotonic()
    assert retry(connect, what="test", stop=stop, backoff=Backoff(0.02, 0.16)) is None
    assert time.monotonic() - began < 1.5  # stopped in the middle of a pause, not after it
    gaps = [later - earlier for earlier, later in itertools.pairwise(calls)]
    assert len(calls) >= 4 and gaps[0] >= 0.02 and gaps[2] >= 0.08 and gaps[2] > gaps[0]


@pytest.mark.parametrize(
    "error",
    [
        ValueError("a bug"),
        psycopg.errors.UndefinedTable('relation "tasks" does not exist'),
        psycopg.OperationalError('connection failed: FATAL:  password authentication failed for user "x"'),
        psycopg.errors.InvalidPassword("wrong"),
    ],
)
def test_what_waiting_does_not_fix_is_raised_at_once(error: BaseException) -> None:
    connect, calls = failing(1, lambda: error)
    with pytest.raises(type(error)):
        retry(connect, what="test", wait=lambda delay: False)
    assert len(calls) == 1


def test_lost_connections_are_told_from_other_errors() -> None:
    refused = psycopg.OperationalError("connection failed: Connection refused")
    transient: list[BaseException] = [
        refused,
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.errors.CannotConnectNow("the database system is starting up"),
        psycopg_pool.PoolTimeout("couldn't get a connection after 5.00 sec"),
        caused(procrastinate.exceptions.ConnectorException(), refused),
        sa.exc.OperationalError("SELECT 1", {}, refused),
        ConnectionRefusedError(),
        Lost("the worker stopped by itself"),
    ]
    fatal: list[BaseException] = [
        ValueError("a bug"),
        psycopg.errors.UndefinedTable('relation "procrastinate_jobs" does not exist'),
        caused(procrastinate.exceptions.ConnectorException(), psycopg.errors.UndefinedTable("x")),
        psycopg.OperationalError('connection failed: FATAL:  database "nope" does not exist'),
        sa.exc.OperationalError("SELECT 1", {}, psycopg.OperationalError('FATAL:  role "x" does not exist')),
        sa.exc.ProgrammingError("SELECT 1", {}, psycopg.errors.UndefinedTable("x")),
    ]
    assert [is_connection_error(e) for e in transient] == [True] * len(transient)
    assert [is_connection_error(e) for e in fatal] == [False] * len(fatal)


def test_retry_async_grows_its_pauses_until_stopped_and_starts_over_after_a_long_run() -> None:
    async def attempts(run_for: float, reset_after: float | None) -> list[float]:
        stop, backoff, calls = asyncio.Event(), Recorded(0.01, 1.0), 0

        async def attempt() -> None:
            nonlocal calls
            calls += 1
            await asyncio.sleep(run_for)
            if calls == 4:
                stop.set()
            raise Lost("gone")

        result = await retry_async(attempt, what="test", stop=stop, backoff=backoff, reset_after=reset_after)
        assert result is None and calls == 4
        return backoff.given

    assert asyncio.run(attempts(0, None)) == [0.01, 0.02, 0.04, 0.08]
    assert asyncio.run(attempts(0.05, 0.04)) == [0.01] * 4  # each ran a while: a new outage each time


def test_the_worker_restarts_its_sessions_until_sigterm(monkeypatch: pytest.MonkeyPatch) -> None:
    """A session that ends on a lost connection is followed by another; SIGTERM ends the loop, which
    returns (status 0); an error that waiting does not fix is raised."""
    sessions: list[str] = []

    async def session(self: WorkerLoop, fail: list[BaseException]) -> None:
        sessions.append("session")
        if fail:
            raise fail.pop(0)
        os.kill(os.getpid(), signal.SIGTERM)  # to this process: the loop's handler stops it
        await self.stopping.wait()

    quick = functools.partial(retry_async, backoff=Backoff(0.01, 0.02))
    monkeypatch.setattr(distributed, "retry_async", quick)

    def run(fail: list[BaseException]) -> None:
        monkeypatch.setattr(WorkerLoop, "session", lambda self: session(self, fail))

        async def main() -> None:
            uows: Any = None
            await WorkerLoop(
                uows, Kinds(), "postgresql+psycopg://x@127.0.0.1:1/x", concurrency=1, lease_ms=1
            ).run()

        asyncio.run(main())

    run([Lost("gone"), psycopg.OperationalError("refused"), psycopg_pool.PoolTimeout("late")])
    assert len(sessions) == 4
    sessions.clear()
    with pytest.raises(psycopg.errors.UndefinedTable):
        run([Lost("gone"), psycopg.errors.UndefinedTable('relation "tasks" does not exist')])
    assert len(sessions) == 2
