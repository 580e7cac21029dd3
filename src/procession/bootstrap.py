"""Wiring in one place: settings -> engine -> the services the API, the worker and the CLI share."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from procession.config import Settings
from procession.store.db import make_engine, migrate
from procession.store.uow import UnitOfWork


@dataclass
class Services:
    settings: Settings
    engine: sa.Engine

    def uow(self, team_id: str, *, write: bool = True) -> UnitOfWork:
        return UnitOfWork(self.engine, team_id, write=write)

    def close(self) -> None:
        self.engine.dispose()


def bootstrap(settings: Settings | None = None, *, run_migrations: bool = True) -> Services:
    """Services for ``settings`` (from the environment by default), the schema brought up to date."""
    settings = settings or Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if run_migrations:
        migrate(settings.url)
    return Services(settings=settings, engine=make_engine(settings.url))
