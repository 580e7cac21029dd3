"""The task engine: kinds of background work and how one task runs.

A *kind* is a handler registered by name (``Kinds``). A task (``store.tasks``) is claimed and run in one
transaction of its team's unit of work, which also closes it: a worker killed at any moment leaves it
pending, and no task is run to completion twice. A failed attempt is rolled back and recorded; the task is
due again after a back-off (doubling, with jitter), and given up after its kind's last attempt. The
embedded runner (SQLite) and procrastinate workers (PostgreSQL) run tasks of any kind through ``run_task``.

A kind may also work a task out ahead (``plan``, on a reader's connection, writing nothing) and then write
what it worked out (``write``) if that still holds: the embedded runner overlaps one task's writes with
working out the next.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from procession.domain.clock import now_ms
from procession.logs import REQUEST_ID
from procession.store.tasks import Queue, Task
from procession.store.uow import UnitOfWork, UnitsOfWork
from procession.tuning import gc_paused

log = logging.getLogger("procession.engine")
BACKOFF_MS = 1000  # after the first failed attempt; doubled after each


@dataclass(frozen=True)
class Kind:
    """A kind of task: ``run(uow, task)`` does it in the claiming transaction (raise to roll it back);
    ``give_up(uow, task, error)`` records that it never will, in the transaction that marks it FAILED.
    ``plan(uow, task)`` and ``write(uow, task, plan)``, if given, split ``run`` for the embedded runner:
    ``write`` raises if what ``plan`` read has changed, and the task is then run afresh. A ``run`` that
    reschedules its task (``Tasks.schedule``) keeps it pending: periodic work (retention) is one task.

    A kind that waits on the outside world (``hold`` and ``outside``) holds no transaction meanwhile: ``hold``
    takes what it will do in the claiming transaction (marking it as taken, with a lease, and making the task
    due again after that lease, so that a worker that dies leaves it to another), and ``outside`` then does
    it, recording what happened in short transactions of its own, and closes or reschedules the task."""

    name: str
    run: Callable[[UnitOfWork, Task], None]
    give_up: Callable[[UnitOfWork, Task, str], None] = lambda uow, task, error: None
    max_attempts: int = 5
    plan: Callable[[UnitOfWork, Task], Any] | None = None
    write: Callable[[UnitOfWork, Task, Any], None] | None = None
    hold: Callable[[UnitOfWork, Task], Any] | None = None
    outside: Callable[[UnitsOfWork, Task, Any], None] | None = None


class Kinds:
    """The kinds a worker runs, by name."""

    def __init__(self, *kinds: Kind) -> None:
        self._kinds: dict[str, Kind] = {}
        for kind in kinds:
            self.add(kind)

    def add(self, kind: Kind) -> None:
        if kind.name in self._kinds:
            raise ValueError(f"task kind {kind.name!r} is registered already")
        self._kinds[kind.name] = kind

    def __getitem__(self, name: str) -> Kind:
        """The kind called ``name``; one that fails every attempt if no handler has that name (a task added
        by a newer version, or of a kind since removed), so that it ends FAILED instead of stopping a loop."""
        return self._kinds.get(name) or Kind(name, run=_unknown(name))


def take_due(
    items: list[Any],
    earliest: dict[Any, int],
    lane: Callable[[Any], Any],
    now: int,
    *,
    limit: int,
    blocked_ms: int,
) -> tuple[list[Any], int | None]:
    """Of a task's unfinished items (runs, deliveries: ``status``, ``lease_until``, ``wake_at``, ``id``), those
    that can go now: due, first of their lane (``earliest``: lane -> the id of its first unfinished item), at
    most ``limit``; and when the task is due again for the others (None: none is left)."""
    take: list[Any] = []
    wakes: list[int] = []
    for item in items:
        running = item.status == "RUNNING"
        due = (item.lease_until or 0) <= now if running else item.wake_at <= now
        first = earliest.get(lane(item))
        if due and (first is None or first >= item.id) and len(take) < limit:
            take.append(item)
        elif due:
            wakes.append(now + blocked_ms if len(take) < limit else now)
        else:
            wakes.append(item.lease_until or now if running else item.wake_at)
    return take, min(wakes) if wakes else None


def _unknown(name: str) -> Callable[[UnitOfWork, Task], None]:
    def run(uow: UnitOfWork, task: Task) -> None:
        raise LookupError(f"no handler for tasks of kind {name!r}")

    return run


def backoff_ms(attempts: int) -> int:
    """How long a task waits after its ``attempts``-th failed attempt: doubling, give or take a quarter."""
    return int(BACKOFF_MS * 2 ** (attempts - 1) * random.uniform(0.75, 1.25))


def team_of(uows: UnitsOfWork, task_id: int) -> str | None:
    with uows.engine.connect() as conn:
        return Queue(conn).team_of(task_id)


def run_task(
    uows: UnitsOfWork,
    kinds: Kinds,
    task_id: int,
    planned: Any = None,
    *,
    team_id: str | None = None,
    elsewhere: Callable[[Callable[[], None]], Any] | None = None,
) -> bool:
    """Claim task ``task_id`` (of ``team_id``, if known) and run it, in one transaction: True; False if it is
    done, taken elsewhere, or waits its turn. With ``planned`` (its kind's ``plan``), write that if it still
    holds, or else run it afresh. A failure is recorded (``failed``) and raised. The outside part of a kind
    that waits on the world runs here, or on ``elsewhere`` (a thread pool's ``submit``: its failure is
    recorded there)."""
    team_id = team_id or team_of(uows, task_id)
    if team_id is None:
        return False
    task: Task | None = None
    held: Any = None
    named = REQUEST_ID.set(None)
    try:
        with uows.write(team_id) as uow:
            task = uow.tasks.claim(task_id)
            if task is None:
                return False
            REQUEST_ID.set(task.args.get("request_id"))  # its log lines name the request that added it
            kind = kinds[task.kind]
            if kind.hold is not None:
                held = kind.hold(uow, task)  # what it takes, with a lease: done below, outside
            elif planned is not None and kind.write is not None:
                kind.write(uow, task, planned)  # built ahead: it makes few objects
            else:
                with gc_paused():  # a chunk's thousands of short-lived objects: reference counting frees them
                    kind.run(uow, task)
            if kind.hold is None and task.id not in uow.tasks.later:  # rescheduled by its run: pending
                uow.tasks.close(task, now_ms())
            uow.commit()
    except Exception as e:
        if planned is not None:  # what it worked out no longer holds, or its commit failed: afresh
            log.info("task %s: run afresh: %r", task_id, e)
            return run_task(uows, kinds, task_id, team_id=team_id)
        log.exception("task %s failed", task_id)
        if task is not None:
            failed(uows, kinds, task, e)
        raise
    finally:
        REQUEST_ID.reset(named)
    if held is not None:  # its failure is recorded by ``_outside``
        work = partial(_outside, uows, kinds, task, held)
        if elsewhere is None:
            work()
        else:
            elsewhere(work)
    return True


def _outside(uows: UnitsOfWork, kinds: Kinds, task: Task, held: Any) -> None:
    kind = kinds[task.kind]
    assert kind.outside is not None
    named = REQUEST_ID.set(task.args.get("request_id"))
    try:
        kind.outside(uows, task, held)
    except Exception as e:
        log.exception("task %s failed", task.id)
        failed(uows, kinds, task, e)
        raise
    finally:
        REQUEST_ID.reset(named)


def failed(uows: UnitsOfWork, kinds: Kinds, task: Task, error: BaseException) -> None:
    """Record a failed attempt: due again after a back-off, or, after its kind's last attempt, given up."""
    text = f"{type(error).__name__}: {error}"[:2000]
    with uows.write(task.team_id) as uow:
        claimed = uow.tasks.claim(task.id)
        if claimed is None:
            return
        now, kind = now_ms(), kinds[claimed.kind]
        if claimed.attempts + 1 >= kind.max_attempts:
            kind.give_up(uow, claimed, text)
            uow.tasks.close(claimed, now, failed=True, error=text)
        else:
            uow.tasks.retry(claimed, now + backoff_ms(claimed.attempts + 1), text)
        uow.commit()
