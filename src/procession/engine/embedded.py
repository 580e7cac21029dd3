"""The embedded runner: a thread in the serve process that applies pending chunks, oldest first. It is also
its own reconciler: whatever is pending (after a crash, a restart) is simply found and run."""

from __future__ import annotations

import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa

from procession.engine.chunks import run_pending

log = logging.getLogger("procession.engine")
SWITCH_INTERVAL_S = 0.0005


class EmbeddedRunner:
    def __init__(self, engine: sa.Engine, *, poll_seconds: float = 1.0) -> None:
        self.engine, self.poll_seconds = engine, poll_seconds
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._loop, name="procession-runner", daemon=True)

    def start(self) -> None:
        # a chunk's writes run on the committer thread, which needs Python's lock back after each call into
        # SQLite: while the runner works the next chunk out, it would wait up to the switch interval for it
        # (5 ms by default, on writes of 10 to 20 ms); 0.5 ms bounds that wait, at a small cost elsewhere
        self._switch_interval = sys.getswitchinterval()  # the process's own: back when it stops
        sys.setswitchinterval(min(self._switch_interval, SWITCH_INTERVAL_S))
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(30)
        sys.setswitchinterval(self._switch_interval)

    def wake(self, job_id: str) -> None:
        """New work was committed."""
        self._wake.set()

    def _loop(self) -> None:
        with ThreadPoolExecutor(1, thread_name_prefix="procession-commit") as committer:
            while not self._stop.is_set():
                try:
                    if run_pending(self.engine, committer, self._stop):
                        continue
                except Exception:
                    log.exception("runner: will retry")
                self._wake.wait(self.poll_seconds)
                self._wake.clear()
