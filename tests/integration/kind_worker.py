"""A worker of the trivial task kind ``test.touch`` beside the wired ones, for tests that kill workers:
``python -m tests.integration.kind_worker`` with ``PROCESSION_DATABASE_URL``, ``PROCESSION_DATA_DIR`` and
``PROCESSION_LEASE_SECONDS`` set. On PostgreSQL it runs a procrastinate worker (``procession worker``'s), on
SQLite the embedded runner (``procession serve``'s), until it is stopped."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from procession.bootstrap import KINDS, bootstrap
from procession.domain.clock import now_ms
from procession.domain.process import ProcessChange
from procession.engine.tasks import Kind, Kinds
from procession.services.processes import load_procedure
from procession.store.tasks import Task
from procession.store.uow import UnitOfWork

TOUCH = "test.touch"


def touch(uow: UnitOfWork, task: Task) -> None:
    """Add one to the score of the lead the task names, in the claiming transaction. Given ``running`` in
    its args, the handler then writes its pid there; given ``block``, it waits while that file exists."""
    procedure = load_procedure(uow, "lead")
    process = uow.processes.get(task.ref, for_update=True)
    assert process is not None, task.ref
    score = procedure.by_short["score"].id
    change = ProcessChange(data={score: (process.data.get(score) or 0) + 1})
    uow.processes.save(procedure, process, process.apply(procedure, change, now=now_ms()), actor=None)
    if "running" in task.args:
        running = Path(task.args["running"])  # written whole, then named: a reader never sees it empty
        running.with_suffix(".part").write_text(str(os.getpid()))
        running.with_suffix(".part").rename(running)
    deadline = time.monotonic() + 120  # an orphan gives up eventually
    while "block" in task.args and Path(task.args["block"]).exists() and time.monotonic() < deadline:
        time.sleep(0.05)


TOUCH_KIND = Kind(TOUCH, run=touch)


def main() -> None:
    svc = bootstrap()
    kinds = Kinds(*KINDS, TOUCH_KIND)
    if svc.settings.is_sqlite:
        from procession.engine.embedded import EmbeddedRunner

        EmbeddedRunner(svc.uows, kinds, poll_seconds=0.1).start()
        threading.Event().wait()  # until the process is stopped
    else:
        from procession.engine.distributed import run_worker

        run_worker(svc.uows, kinds, svc.settings.url, concurrency=1, lease_ms=svc.lease_ms)


if __name__ == "__main__":
    main()
