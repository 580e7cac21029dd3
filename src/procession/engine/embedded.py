"""The embedded runner: a thread in the serve process that runs pending tasks of every kind, oldest due
first. It is also its own reconciler: whatever is pending (after a crash, a restart) is simply found and run.

One overlap: while a task's writes run and commit on the committer thread (a bulk chunk's are built ahead,
each one call into SQLite, which holds no Python lock), the next task is worked out on the runner's thread
(its kind's ``plan``, on a reader's connection). That one is not waiting for the task in flight (the lanes
say so), so they name no process in common, and it is written only if what it read still holds
(``run_task``). Each unit of work is entered and left on one thread: plans on the runner's, writes on the
committer's.

On SQLite the runner's reader is on the WAL whenever a task commits, so no commit could start the WAL over:
it would grow by every chunk of a job. Every ``RESTART_EVERY`` tasks, between working one out and writing
it, the WAL is copied into the file with none of the runner's readers on it (``checkpoint``), so that
task's commit starts it over.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from procession.domain.clock import now_ms
from procession.engine.tasks import Kinds, run_task, team_of
from procession.store.sqlite import checkpoint
from procession.store.tasks import Queue
from procession.store.uow import UnitsOfWork
from procession.tuning import gc_paused, quick_switches

log = logging.getLogger("procession.engine")
RESTART_EVERY = 16  # tasks: on SQLite, the WAL is started over after about 25,000 frames
OUTSIDE_THREADS = 4  # tasks waiting on the outside world (automation runs' calls) at once, beside the rest


class EmbeddedRunner:
    def __init__(self, uows: UnitsOfWork, kinds: Kinds, *, poll_seconds: float = 1.0) -> None:
        self.uows, self.kinds, self.poll_seconds = uows, kinds, poll_seconds
        self._wake, self._stop = threading.Event(), threading.Event()
        self._next_at: float | None = None  # epoch ms: the earliest time a task was rescheduled for
        self._thread = threading.Thread(target=self._loop, name="procession-runner", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(30)

    def wake(self, kind: str, ref: str) -> None:
        """Tasks of ``kind`` for ``ref`` were committed."""
        self._wake.set()

    def wake_at(self, task_id: int, at: int) -> None:
        """Task ``task_id`` is due at ``at``: the runner looks again then, not at its next poll."""
        if self._next_at is None or at < self._next_at:
            self._next_at = at
            self._wake.set()  # to sleep until then instead

    def _loop(self) -> None:
        with (
            ThreadPoolExecutor(1, thread_name_prefix="procession-commit") as committer,
            ThreadPoolExecutor(OUTSIDE_THREADS, thread_name_prefix="procession-outside") as outside,
        ):
            while not self._stop.is_set():
                try:
                    if run_pending(self.uows, self.kinds, committer, self._stop, outside.submit):
                        continue
                except Exception:
                    log.exception("runner: will retry")
                self._wake.wait(self._sleep())
                self._wake.clear()

    def _sleep(self) -> float:
        """Seconds until the next poll, or sooner, the earliest time a task was rescheduled for."""
        at, self._next_at = self._next_at, None
        if at is None:
            return self.poll_seconds
        return min(self.poll_seconds, max(0.0, (at - now_ms()) / 1000))


def next_due(uows: UnitsOfWork, *, but: int | None = None) -> int | None:
    with uows.engine.connect() as conn:
        return Queue(conn).next_due(now_ms(), but=but)


def plan(uows: UnitsOfWork, kinds: Kinds, task_id: int) -> tuple[str | None, Any]:
    """Task ``task_id``'s team, and the task worked out ahead by its kind on a reader's connection: None if
    its kind does not, it is no longer pending, or working it out failed (it is then run afresh, which tells
    what is wrong)."""
    team_id = None
    try:
        team_id = team_of(uows, task_id)
        if team_id is None:
            return None, None
        with uows.read(team_id) as uow:
            task = uow.tasks.pending(task_id)
            kind = kinds[task.kind] if task is not None else None
            if task is None or kind is None or kind.plan is None:
                return team_id, None
            return team_id, kind.plan(uow, task)
    except Exception as e:
        log.info("task %s: run afresh: %r", task_id, e)
        return team_id, None


def run_pending(
    uows: UnitsOfWork,
    kinds: Kinds,
    committer: ThreadPoolExecutor,
    stop: threading.Event,
    elsewhere: Any = None,
) -> bool:
    """Run the pending tasks as they come due until none is left or ``stop``; False if it ran none. The
    outside part of a task that waits on the world goes to ``elsewhere`` (``run_task``), so that it holds up
    no other task."""
    task_id = next_due(uows)
    if task_id is None:
        return False
    in_flight: Future[bool] | None = None

    def settle() -> None:  # the task in flight is committed, or else run afresh (``run_task``)
        nonlocal in_flight
        if in_flight is not None:
            committing, in_flight = in_flight, None
            committing.result()  # a failure is recorded: the runner's loop retries

    found = 0
    with quick_switches():  # the committer needs Python's lock back after each call into SQLite
        try:
            while task_id is not None and not stop.is_set():
                found += 1
                with gc_paused():  # and the plan's objects are gone when it resumes: no collection scans them
                    team_id, planned = plan(uows, kinds, task_id)
                    settle()
                    if found % RESTART_EVERY == 0:
                        checkpoint(uows.engine)
                    in_flight = committer.submit(
                        run_task, uows, kinds, task_id, planned, team_id=team_id, elsewhere=elsewhere
                    )
                    del planned
                running, task_id = task_id, next_due(uows, but=task_id)
                if task_id is None:
                    settle()  # the tasks that waited for it may run now
                    task_id = next_due(uows)
                    if task_id == running:
                        task_id = None
        finally:
            settle()
    return found > 0
