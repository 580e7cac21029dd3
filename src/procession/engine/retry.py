"""Riding out a lost database: what counts as one, and retrying with a back-off (0.5 s, doubling, up to
10 s, a log line per attempt) until it is back or the caller stops.

A database that restarts (a crash restart, a fast restart), starts up, shuts down or drops off the network
is *transient*: waiting fixes it. Anything else is fatal and raised at once (bad settings, a missing
table): waiting would only hide it. ``retry`` is for threads, ``retry_async`` for an event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import psycopg
import sqlalchemy as sa

log = logging.getLogger("procession.engine")
T = TypeVar("T")
FIRST_DELAY, MAX_DELAY = 0.5, 10.0  # seconds
# connection failures that name a wrong setting, not a database away for a while
FATAL_SQLSTATES = ("28", "3D000")  # invalid authorization (a role, a password); no such database
FATAL_MESSAGES = ("password authentication failed", "no pg_hba.conf entry", "does not exist")


class Lost(Exception):
    """The database went away under something that does not say so itself (a worker that stopped on its
    own, its side task's error already logged)."""


class Backoff:
    """Delays doubling from ``first`` up to ``cap``; ``reset`` starts them over."""

    def __init__(self, first: float = FIRST_DELAY, cap: float = MAX_DELAY) -> None:
        self.first, self.cap = first, cap
        self._next = first

    def reset(self) -> None:
        self._next = self.first

    def next(self) -> float:
        delay, self._next = self._next, min(self._next * 2, self.cap)
        return delay


def causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and what it was raised from (``raise ... from``: procrastinate's and SQLAlchemy's wrappers)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or getattr(current, "orig", None)


def is_connection_error(error: BaseException) -> bool:
    """Whether ``error`` says the database could not be reached or the connection was lost (transient), as
    opposed to a fault that waiting does not fix."""
    found = False
    for e in causes(error):
        if isinstance(e, psycopg.OperationalError):
            sqlstate = getattr(e, "sqlstate", None) or ""
            if sqlstate.startswith(FATAL_SQLSTATES) or any(m in str(e) for m in FATAL_MESSAGES):
                return False
            found = True
        elif isinstance(e, Lost | ConnectionError | TimeoutError | sa.exc.OperationalError) or (
            isinstance(e, sa.exc.DBAPIError) and e.connection_invalidated
        ):
            found = True
    return found


def describe(error: BaseException) -> str:
    """One line for a log: the innermost error that has something to say."""
    said = [e for e in causes(error) if str(e).strip()] or [error]
    inner = said[-1]
    text = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {text[0]}" if text else type(inner).__name__


class _Attempts:
    """The bookkeeping both loops share: count, log, pause."""

    def __init__(self, what: str, backoff: Backoff | None, reset_after: float | None) -> None:
        self.what, self.backoff, self.reset_after = what, backoff or Backoff(), reset_after
        self.failures = 0
        self.began = time.monotonic()

    def start(self) -> None:
        self.began = time.monotonic()

    def failed(self, error: BaseException) -> float:
        """The pause before the next attempt (a transient ``error``: the caller raises any other)."""
        if self.reset_after is not None and time.monotonic() - self.began >= self.reset_after:
            self.backoff.reset()  # it ran well for a while: this is a new outage
        self.failures += 1
        delay = self.backoff.next()
        log.warning(
            "%s: database unreachable (%s); attempt %d failed, next in %.1f s",
            self.what,
            describe(error),
            self.failures,
            delay,
        )
        return delay

    def succeeded(self) -> None:
        if self.failures:
            log.warning("%s: database reachable again after %d failed attempt(s)", self.what, self.failures)


def retry(
    attempt: Callable[[], T],
    *,
    what: str,
    stop: threading.Event | None = None,
    backoff: Backoff | None = None,
    transient: Callable[[BaseException], bool] = is_connection_error,
    wait: Callable[[float], bool] | None = None,
) -> T | None:
    """``attempt()``'s result, calling it again after each transient error (a log line, then the back-off's
    next pause) until it returns; None once ``stop`` is set (callers tell that apart by ``stop``). Other
    errors are raised. ``wait(seconds)`` pauses, True if stopped (by default ``stop.wait``)."""
    stop = stop or threading.Event()
    pause = wait or stop.wait
    attempts = _Attempts(what, backoff, None)
    while not stop.is_set():
        try:
            result = attempt()
        except Exception as e:
            if not transient(e):
                raise
            if pause(attempts.failed(e)):
                break
            continue
        attempts.succeeded()
        return result
    return None


async def retry_async(
    attempt: Callable[[], Awaitable[T]],
    *,
    what: str,
    stop: asyncio.Event,
    backoff: Backoff | None = None,
    transient: Callable[[BaseException], bool] = is_connection_error,
    reset_after: float | None = None,
) -> T | None:
    """``retry`` on an event loop; an attempt that ran ``reset_after`` seconds or more before it failed
    starts the back-off over."""
    attempts = _Attempts(what, backoff, reset_after)
    while not stop.is_set():
        attempts.start()
        try:
            result = await attempt()
        except Exception as e:
            if not transient(e):
                raise
            delay = attempts.failed(e)
            if stop.is_set():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            continue
        return result  # (an attempt that runs until stopped says itself when it is back)
    return None
