"""Readiness (``/readyz``): whether the database takes a write now, and on PostgreSQL whether workers were
seen lately (none seen: not ready, since the background work the writes add would wait)."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from procession.domain.clock import new_id
from procession.domain.errors import Unavailable
from procession.store.db import storage_full
from procession.store.repositories.health import Health
from procession.store.uow import UnitsOfWork

log = logging.getLogger("procession.health")

PROBE_TIMEOUT_S = 2.0
# SQLite: below this much free space on the database's disk, storage counts as full. A write probe alone
# can pass in room the WAL file already holds (a failed write's frames) while a write of a few pages fails.
MIN_FREE_BYTES = 256 * 1024
WORKERS_WITHIN_S = 30  # procrastinate's heartbeat is every 10 s; it takes a worker silent for 30 s as stalled

Write = Callable[[Callable[[UnitsOfWork], None]], Awaitable[None]]


def probe_write(uows: UnitsOfWork) -> None:
    """A write on the requests' own path (on SQLite, in their group commit), committed, that leaves nothing
    behind."""
    probe_id = new_id()
    with uows.write(probe_id) as uow:  # the unit of work of a team that exists only inside it
        Health(uow.conn).probe_write(probe_id)
        uow.commit()


def workers_seen(engine: sa.Engine) -> int | None:
    """PostgreSQL: procrastinate workers seen in the last ``WORKERS_WITHIN_S``; None if its tables cannot tell."""
    try:
        with engine.connect() as conn:
            return Health(conn).workers_seen(WORKERS_WITHIN_S)
    except sa.exc.ProgrammingError:  # no procrastinate_workers table (not procrastinate 3's schema)
        return None


def sqlite_folder(engine: sa.Engine) -> Path | None:
    """The folder of the engine's SQLite file; None on PostgreSQL or for a database in memory."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).resolve().parent


class Readiness:
    """``check()``: what was found, or ``Unavailable`` naming why the database takes no write, within
    ``timeout_s``. One probe runs at a time: a caller meanwhile waits for it, so a database that hangs holds
    one thread, however often it is asked. ``disk`` is the SQLite file's folder, whose free space is checked
    first; ``workers`` asks procrastinate's tables (PostgreSQL) how many workers were seen lately."""

    def __init__(
        self,
        write: Write,
        engine: sa.Engine,
        *,
        disk: Path | None,
        workers: bool,
        timeout_s: float = PROBE_TIMEOUT_S,
    ) -> None:
        self.write, self.engine, self.disk, self.workers = write, engine, disk, workers
        self.timeout_s = timeout_s
        self._probe: asyncio.Future[dict[str, Any]] | None = None

    async def check(self) -> dict[str, Any]:
        if self._probe is None or self._probe.done():
            self._probe = asyncio.ensure_future(self._run())
            self._probe.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved if none waits
        try:
            return await asyncio.wait_for(asyncio.shield(self._probe), self.timeout_s)
        except TimeoutError:
            raise Unavailable(
                f"the database did not take a write within {self.timeout_s * 1000:,.0f} ms", code="not_ready"
            ) from None

    async def _run(self) -> dict[str, Any]:
        free = (await asyncio.to_thread(shutil.disk_usage, self.disk)).free if self.disk else MIN_FREE_BYTES
        if free < MIN_FREE_BYTES:
            raise Unavailable(
                f"the database takes no write: storage is full ({free:,} bytes free)", code="storage_full"
            )
        try:
            await self.write(probe_write)
        except Exception as e:
            if storage_full(e):
                raise Unavailable(
                    "the database takes no write: storage is full", code="storage_full"
                ) from None
            log.warning("readiness: the write probe failed: %s", (str(e).splitlines() or [""])[0][:500])
            raise Unavailable(
                f"the database takes no write ({type(e).__name__}; the server's log says more)",
                code="not_ready",
            ) from None
        found: dict[str, Any] = {"database": "writable"}
        if self.workers:
            seen = await asyncio.to_thread(workers_seen, self.engine)
            if seen == 0:  # writes are taken, but the background work they add would wait for a worker
                raise Unavailable(
                    f"no worker was seen in the last {WORKERS_WITHIN_S} s: background work waits "
                    "(start `procession worker`)",
                    code="no_workers",
                )
            if seen is not None:
                found["workers"] = {"seen": seen, "withinSeconds": WORKERS_WITHIN_S}
        return found
