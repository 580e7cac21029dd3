"""Retention: a team's rows that are old enough to go, removed a batch at a time (each call one short
statement or two, so a writer never waits long behind it): the entries of finished jobs, finished automation
runs with their attempts, finished webhook deliveries with theirs, and, when the team set it, events.

Rows with the highest id of their table are kept: on SQLite a table's next id is its highest plus one, so
removing them would hand their ids out again.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from procession.domain.clock import now_ms
from procession.store import tables as t
from procession.store.repositories.base import Repository
from procession.store.statement import ACROSS_TEAMS
from procession.store.tasks import PENDING, NewTask, Tasks

RETENTION = "retention"  # the kind of each team's retention task (``engine.retention``)
FIRST_ROUND_MS = 3600 * 1000  # a new team's first round, after this: it has nothing old yet
J, E = t.jobs.c, t.job_entries.c
RUN_DONE = ("SUCCEEDED", "FAILED", "CANCELLED")
DELIVERY_DONE = ("SUCCEEDED", "FAILED")


def _below_highest(table: sa.Table) -> Any:
    """SQL: the row is not its table's newest (whichever team's)."""
    highest = sa.select(sa.func.max(table.c.id)).prefix_with(ACROSS_TEAMS).scalar_subquery()
    return table.c.id < highest


class Retention(Repository):
    """Removes a team's old rows, up to ``limit`` per call; each call answers how many it removed."""

    def event_days(self) -> int | None:
        """The team's event retention (days), or None: events are kept."""
        return self.conn.scalar(sa.select(t.teams.c.event_retention_days).where(t.teams.c.id == self.team_id))

    def set_event_days(self, days: int | None) -> None:
        self.conn.execute(
            t.teams.update().where(t.teams.c.id == self.team_id).values(event_retention_days=days)
        )

    def job_entries(self, before: int, limit: int) -> int:
        """Entries of one job that finished before ``before`` (the oldest such job that still has some)."""
        job_id = self.conn.scalar(
            sa.select(J.id)
            .where(
                J.team_id == self.team_id,
                J.finished_at < before,
                sa.exists().where(E.job_id == J.id),
            )
            .order_by(J.finished_at)
            .limit(1)
        )
        if job_id is None:
            return 0
        first = sa.select(E.idx).where(E.job_id == job_id).order_by(E.idx).limit(limit)
        mine = sa.exists().where(J.id == job_id, J.team_id == self.team_id)
        return self._removed(
            t.job_entries.delete().where(E.job_id == job_id, E.idx.in_(first.scalar_subquery()), mine)
        )

    def runs(self, before: int, limit: int) -> int:
        """Runs that finished before ``before``, with their attempts."""
        c = t.runs.c
        return self._with_attempts(
            t.runs,
            c.status.in_(RUN_DONE),
            c.finished_at < before,
            t.run_attempts,
            t.run_attempts.c.run_id,
            limit,
        )

    def deliveries(self, before: int, limit: int) -> int:
        """Webhook deliveries that finished (sent, or given up) before ``before``, with their attempts."""
        c, a = t.webhook_deliveries.c, t.webhook_attempts
        return self._with_attempts(
            t.webhook_deliveries,
            c.status.in_(DELIVERY_DONE),
            c.finished_at < before,
            a,
            a.c.delivery_id,
            limit,
        )

    def events(self, before: int, limit: int) -> int:
        """Events written before ``before``."""
        c = t.events.c
        ids = (
            sa.select(c.id)
            .where(c.team_id == self.team_id, c.created_at < before, _below_highest(t.events))
            .order_by(c.created_at)
            .limit(limit)
        )
        found = list(self.conn.execute(ids).scalars())
        if not found:
            return 0
        return self._removed(t.events.delete().where(c.team_id == self.team_id, c.id.in_(found)))

    def _with_attempts(
        self, table: sa.Table, done: Any, old: Any, attempts: sa.Table, owner: Any, limit: int
    ) -> int:
        c = table.c
        ids = list(
            self.conn.execute(
                sa.select(c.id)
                .where(c.team_id == self.team_id, old, done, _below_highest(table))
                .order_by(c.finished_at)
                .limit(limit)
            ).scalars()
        )
        if not ids:
            return 0
        self.conn.execute(attempts.delete().where(attempts.c.team_id == self.team_id, owner.in_(ids)))
        return self._removed(table.delete().where(c.team_id == self.team_id, c.id.in_(ids)))

    def _removed(self, stmt: Any) -> int:
        return int(self.conn.execute(stmt).rowcount or 0)


def add_task(conn: sa.Connection, team_id: str, at: int) -> None:
    """The team's retention task, due at ``at`` (numbered after its earlier ones: a task given up stays)."""
    c = t.tasks.c
    earlier = conn.scalar(
        sa.select(sa.func.count()).where(c.team_id == team_id, c.kind == RETENTION, c.ref == team_id)
    )
    Tasks(conn, team_id).add(RETENTION, [NewTask(ref=team_id, part=int(earlier or 0), wake_at=at)], now=at)


def ensure_tasks(engine: sa.Engine) -> int:
    """Add a retention task for each team that has none pending; how many were added."""
    c = t.tasks.c
    pending = sa.exists().where(c.team_id == t.teams.c.id, c.kind == RETENTION, c.status == PENDING)
    with engine.connect() as conn:
        teams = list(conn.scalars(sa.select(t.teams.c.id).where(~pending).prefix_with(ACROSS_TEAMS)))
    added = 0
    for team_id in teams:
        try:
            with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
                add_task(conn, team_id, now_ms())
            added += 1
        except sa.exc.IntegrityError:  # another process added it meanwhile
            continue
    return added
