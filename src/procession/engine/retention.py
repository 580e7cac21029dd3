"""Retention as background work: one task per team (kind ``retention``) that removes a batch of the team's
old rows (``store.repositories.retention``) and is due again at once while there is more, else after
``every_ms``. It never holds a transaction long: each round is one short transaction of the task engine,
between which any other task and every request writes. On SQLite the embedded runner picks it up in due
order with the rest; on PostgreSQL the reconciler (a procrastinate periodic task) wakes it when due.

On SQLite, a round also takes a step of merging text search's index (``store.words.tidy``), which the
teams share: a pass begins at most every ``every_ms`` in a process and ends when nothing is left to merge, or
after as many steps as the index had pages to merge when it began (writes meanwhile add more for ever).

A team's task is added with the team, and at start for every team that has none pending (one given up
after its last attempt is followed by a new one then).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from procession.domain.clock import now_ms
from procession.engine.tasks import Kind
from procession.store import words
from procession.store.repositories.retention import RETENTION, Retention
from procession.store.tasks import Task
from procession.store.uow import UnitOfWork

log = logging.getLogger("procession.engine")
DAY_MS = 24 * 3600 * 1000


@dataclass
class Merging:
    """This process's pass merging the text index: when the last one began, and the steps the one under way
    may still take (0: none under way)."""

    began: int | None = None
    left: int = 0


@dataclass(frozen=True)
class Rounds:
    """``days``: how old finished jobs' entries, runs and deliveries may get (0: kept for ever); ``batch``:
    rows per table a round removes; ``every_ms``: the time between two rounds once nothing is left, and
    between two passes merging the text index; ``merging``: the pass of this process (``_merge``)."""

    days: float
    batch: int = 500
    every_ms: int = 3600 * 1000
    merging: Merging = field(default_factory=Merging, compare=False)

    def kind(self) -> Kind:
        return Kind(RETENTION, run=self.run)

    def _merge(self, uow: UnitOfWork, now: int) -> bool:
        """A step of this process's pass merging the text index, if one is under way or due; whether the pass
        goes on."""
        m = self.merging
        if not m.left:
            if m.began is not None and now - m.began < self.every_ms:
                return False
            m.began, m.left = now, words.tidy_steps(uow.conn)
        m.left = m.left - 1 if words.tidy(uow.conn) else 0
        return m.left > 0

    def run(self, uow: UnitOfWork, task: Task) -> None:
        now = now_ms()
        prune = Retention(uow.conn, uow.team_id)
        removed = {}
        if self.days > 0:
            before = now - int(self.days * DAY_MS)
            removed["job entries"] = prune.job_entries(before, self.batch)
            removed["runs"] = prune.runs(before, self.batch)
            removed["webhook deliveries"] = prune.deliveries(before, self.batch)
        event_days = prune.event_days()
        if event_days:
            removed["events"] = prune.events(now - event_days * DAY_MS, self.batch)
        more = self._merge(uow, now) or any(n >= self.batch for n in removed.values())
        if any(removed.values()):
            log.info("retention: team %s: removed %s", uow.team_id, removed)
        uow.tasks.schedule(task.id, now if more else now + self.every_ms)  # kept pending: see ``run_task``
