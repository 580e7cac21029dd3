"""Tasks: the durable rows of background work of every kind (``tables.tasks``). ``Tasks`` is a team's (what a
unit of work adds, claims and closes); ``Queue`` is the engine's, across teams (what is due, what to wake).

A task of a *lane* (a procedure's bulk jobs, say) waits while a pending task of that lane has an id up to its
``after_id``: ids grow in the order tasks are added, so a lane runs in that order as far as each task asks.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import cache
from typing import Any

import sqlalchemy as sa

from procession.logs import REQUEST_ID
from procession.store import tables as t
from procession.store.repositories.base import ID, TEAM, Repository, new_ids
from procession.store.statement import ACROSS_TEAMS, Statement

T = t.tasks.c
WORKER = f"{socket.gethostname()}:{os.getpid()}"  # who finished a task, for operators (and tests)
PENDING, DONE, FAILED = "PENDING", "DONE", "FAILED"


@dataclass(frozen=True)
class Task:
    id: int
    team_id: str
    kind: str
    ref: str
    part: int
    args: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class NewTask:
    """A task to add: ``after``, the position of an earlier one of the same ``Tasks.add`` it waits for
    (with every task of its lane before that one); None: only the lane's tasks added before these."""

    ref: str
    part: int = 0
    args: dict[str, Any] | None = None
    after: int | None = None
    wake_at: int | None = None  # due from (None: now)


@cache
def waits() -> Any:
    """SQL on ``tasks``: a pending task of its lane has an id up to its ``after_id``."""
    earlier = t.tasks.alias("earlier")
    return sa.exists().where(
        earlier.c.lane == T.lane, earlier.c.status == PENDING, earlier.c.id <= T.after_id
    )


_COLUMNS = (T.id, T.team_id, T.kind, T.ref, T.part, T.args, T.attempts)
_CLAIM = Statement(
    sa.select(*_COLUMNS)
    .where(T.team_id == TEAM, T.id == ID, T.status == PENDING, ~waits())
    .with_for_update(skip_locked=True),
    json_columns=[5],
)
_PEEK = Statement(
    sa.select(*_COLUMNS).where(T.team_id == TEAM, T.id == ID, T.status == PENDING), json_columns=[5]
)
_CLOSE = Statement(
    t.tasks.update()
    .where(T.team_id == TEAM, T.id == ID)
    .values(
        attempts=T.attempts + sa.bindparam("b_failed", type_=sa.Integer),  # the last attempt counts too
        status=sa.bindparam("b_status"),
        done_by=sa.bindparam("b_by"),
        finished_at=sa.bindparam("b_now"),
        last_error=sa.bindparam("b_error"),
    )
)
_RETRY = Statement(
    t.tasks.update()
    .where(T.team_id == TEAM, T.id == ID)
    .values(
        attempts=T.attempts + 1,
        wake_at=sa.bindparam("b_at"),
        lease_until=None,
        last_error=sa.bindparam("b_error"),
    )
)
_SCHEDULE = Statement(
    t.tasks.update()
    .where(T.team_id == TEAM, T.id == ID, T.status == PENDING)
    .values(wake_at=sa.bindparam("b_at"), lease_until=None)
)


class Tasks(Repository):
    """A team's tasks. ``added`` collects the (kind, ref) of the tasks added, for the unit of work to wake
    once they are committed."""

    def __init__(self, conn: sa.Connection, team_id: str) -> None:
        super().__init__(conn, team_id)
        self.added: set[tuple[str, str]] = set()
        self.later: dict[int, int] = {}  # task id -> when it is due, rescheduled for later

    def add(self, kind: str, tasks: list[NewTask], *, lane: str | None = None, now: int) -> None:
        """Add ``tasks`` of ``kind``, due now, in order (their ids grow with their position)."""
        if not tasks:
            return
        ids = new_ids(self.conn, t.tasks, len(tasks))
        request_id = REQUEST_ID.get()  # the request (or the task) adding them: named in their logs
        stamp = {"request_id": request_id} if request_id is not None else {}
        rows = [
            {
                "id": ids[n],
                "team_id": self.team_id,
                "kind": kind,
                "ref": task.ref,
                "part": task.part,
                "args": (task.args or {}) | stamp,
                "status": PENDING,
                "attempts": 0,
                "wake_at": now if task.wake_at is None else task.wake_at,
                "lane": lane,
                "after_id": (ids[0] - 1 if task.after is None else ids[task.after]) if lane else None,
                "created_at": now,
            }
            for n, task in enumerate(tasks)
        ]
        self.conn.execute(t.tasks.insert(), rows)
        self.added.update((kind, task.ref) for task in tasks)

    def claim(self, task_id: int) -> Task | None:
        """Lock this pending task for this transaction; None if it is taken, done, or waits its turn."""
        row = self._first(_CLAIM, b_id=task_id)
        return Task(*row) if row else None

    def pending(self, task_id: int) -> Task | None:
        """This task if it is pending (not locked: for working it out ahead)."""
        row = self._first(_PEEK, b_id=task_id)
        return Task(*row) if row else None

    def close(self, task: Task, now: int, *, failed: bool = False, error: str | None = None) -> None:
        """The task is done (or, ``failed``, given up)."""
        status = FAILED if failed else DONE
        self._write(
            _CLOSE, b_id=task.id, b_status=status, b_by=WORKER, b_now=now, b_error=error, b_failed=int(failed)
        )

    def retry(self, task: Task, at: int, error: str) -> None:
        """One more failed attempt; due again at ``at``."""
        self._write(_RETRY, b_id=task.id, b_at=at, b_error=error[:2000])

    def schedule(self, task_id: int, at: int) -> None:
        """Due again at ``at`` (no failed attempt: the task's kind keeps its own schedule), and woken then."""
        self._write(_SCHEDULE, b_id=task_id, b_at=at)
        self.later[task_id] = at

    def wake_ref(self, kind: str, ref: str, at: int) -> None:
        """The pending tasks of ``kind`` for ``ref`` are due at ``at`` (woken once committed)."""
        self.conn.execute(
            t.tasks.update()
            .where(T.team_id == self.team_id, T.kind == kind, T.ref == ref, T.status == PENDING)
            .values(wake_at=at, lease_until=None)
        )
        self.added.add((kind, ref))

    def of(self, kind: str, ref: str) -> list[dict[str, Any]]:
        """The tasks of ``kind`` for ``ref``, by part: their state, for people and tests."""
        rows = self.conn.execute(
            sa.select(T.id, T.part, T.status, T.attempts, T.wake_at, T.last_error, T.after_id, T.done_by)
            .where(T.team_id == self.team_id, T.kind == kind, T.ref == ref)
            .order_by(T.part)
        )
        return [r._asdict() for r in rows]


# the engine's statements find work for every team: marked, for the tenancy check
_TEAM_OF = Statement(sa.select(T.team_id).where(T.id == ID).prefix_with(ACROSS_TEAMS))
_NEXT = Statement(
    sa.select(T.id)
    .where(T.status == PENDING, T.wake_at <= sa.bindparam("b_now"), T.id != sa.bindparam("b_but"), ~waits())
    .order_by(T.wake_at, T.id)
    .limit(1)
    .prefix_with(ACROSS_TEAMS)
)


class Queue:
    """Pending tasks across teams: what the engine runs next and what it wakes."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def team_of(self, task_id: int) -> str | None:
        found = _TEAM_OF.scalar(self.conn, {"b_id": task_id})
        return str(found) if found is not None else None

    def next_due(self, now: int, *, but: int | None = None) -> int | None:
        """The oldest due pending task not waiting its turn, other than ``but`` (a hint: claims are real)."""
        return _NEXT.scalar(self.conn, {"b_now": now, "b_but": -1 if but is None else but})

    def lease(self, where: Any, now: int, lease_ms: int, limit: int = 1000) -> list[int]:
        """The due pending tasks matching ``where`` that wait for nothing and whose wake-up lease has run out
        (or that have none), leased for ``lease_ms`` from now: the ones to wake."""
        rows = self.conn.execute(
            sa.select(T.id)
            .where(
                where,
                T.status == PENDING,
                T.wake_at <= now,
                sa.or_(T.lease_until.is_(None), T.lease_until <= now),
                ~waits(),
            )
            .order_by(T.wake_at, T.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .prefix_with(ACROSS_TEAMS)
        ).scalars()
        ids = list(rows)
        if ids:
            self.conn.execute(
                t.tasks.update()
                .where(T.id.in_(ids))
                .values(lease_until=now + lease_ms)
                .prefix_with(ACROSS_TEAMS)
            )
        return ids

    def lease_due(self, now: int, lease_ms: int) -> list[int]:
        """The reconciler's: any due task whose wake-up was lost, its worker killed, or never sent."""
        return self.lease(sa.true(), now, lease_ms)

    def lease_of(self, kind: str, ref: str, now: int, lease_ms: int) -> list[int]:
        """The waker's: the tasks of ``kind`` for ``ref`` (just committed)."""
        return self.lease(sa.and_(T.kind == kind, T.ref == ref), now, lease_ms)

    def lease_task(self, task_id: int, now: int, lease_ms: int) -> list[int]:
        """A timer's: task ``task_id``, if it is due."""
        return self.lease(T.id == task_id, now, lease_ms)

    def lease_lane(self, task_id: int, now: int, lease_ms: int) -> list[int]:
        """Once task ``task_id`` is done: the tasks of its lane that it held back and may run now."""
        done = t.tasks.alias("done")
        lane = sa.select(done.c.lane).where(done.c.id == task_id).scalar_subquery()
        return self.lease(sa.and_(T.lane == lane, T.id != task_id), now, lease_ms)
