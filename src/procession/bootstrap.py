"""Wiring in one place: settings -> engine -> the services the API, the worker and the CLI share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa

from procession.config import Settings
from procession.store.db import Checkpointer, make_engine, migrate
from procession.store.uow import UnitOfWork
from procession.store.writer import MakeUow, Writer

T = TypeVar("T")


@dataclass
class Services:
    settings: Settings
    engine: sa.Engine
    waker: Any = None  # wakes background work after a commit: the embedded runner or procrastinate
    checkpointer: Checkpointer | None = None  # SQLite: keeps the WAL short, off the writers' path
    writer: Writer = field(init=False)

    def __post_init__(self) -> None:
        self.writer = Writer(self.engine)

    def uow(self, team_id: str, *, write: bool = True) -> UnitOfWork:
        return UnitOfWork(self.engine, team_id, write=write)

    async def write(self, team_id: str, work: Callable[[MakeUow], T]) -> T:
        """Run ``work(make_uow)`` for a request (see ``store.writer``: on SQLite together with the others
        waiting, in one transaction; on PostgreSQL in the thread pool). Its result once it is durable."""
        return await self.writer.run(team_id, work)

    def wake(self, job_id: str) -> None:
        if self.waker is not None:
            self.waker.wake(job_id)

    def start_background(self) -> None:
        """Run background work in this process (embedded) or hand it to ``procession worker`` processes."""
        if self.settings.is_sqlite:
            self.checkpointer = Checkpointer(self.engine)
            self.checkpointer.start()
        embedded = self.settings.embedded_worker
        if embedded or (embedded is None and self.settings.is_sqlite):
            from procession.engine.embedded import EmbeddedRunner

            self.waker = EmbeddedRunner(self.engine)
            self.waker.start()
        elif not self.settings.is_sqlite:
            from procession.engine.distributed import DistributedWaker

            self.waker = DistributedWaker(self.engine, self.settings.url)

    def close(self) -> None:
        if self.waker is not None:
            self.waker.stop()
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.writer.close()
        self.engine.dispose()


def bootstrap(settings: Settings | None = None, *, run_migrations: bool = True) -> Services:
    """Services for ``settings`` (from the environment by default), the schema brought up to date."""
    settings = settings or Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if run_migrations:
        migrate(settings.url)
        if not settings.is_sqlite:
            from procession.engine.distributed import apply_schema

            apply_schema(settings.url)
    return Services(settings=settings, engine=make_engine(settings.url))
