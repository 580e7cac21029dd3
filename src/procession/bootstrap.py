"""Wiring in one place: settings -> engine -> the services the API, the worker and the CLI share, and the
way each runs a use case (a service function ``use_case(uows, ...)`` that owns its transaction)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

import sqlalchemy as sa

from procession.config import Settings
from procession.connectors.outbound import Outbound
from procession.connectors.secrets import Vault
from procession.engine.bulk import BULK_CHUNK
from procession.engine.deliveries import WebhookDeliveries
from procession.engine.indexing import INDEXING
from procession.engine.registration import register_runs
from procession.engine.retention import Rounds
from procession.engine.runs import AutomationRuns
from procession.engine.tasks import Kind, Kinds
from procession.engine.webhooks import register_deliveries
from procession.store.backup import hold
from procession.store.db import make_engine, migrate
from procession.store.outbox import FollowUp
from procession.store.repositories.retention import ensure_tasks
from procession.store.sqlite import Checkpointer
from procession.store.uow import UnitsOfWork
from procession.store.writer import Writer

T = TypeVar("T")
KINDS: tuple[Kind, ...] = (
    BULK_CHUNK,
    INDEXING,
)  # every kind of background work (and runs and deliveries, below)
# rows written for the events of every save, with them: automation runs, webhook deliveries
FOLLOW_UPS: tuple[FollowUp, ...] = (register_runs, register_deliveries)


@dataclass
class Services:
    settings: Settings
    engine: sa.Engine
    kinds: Kinds = field(init=False)
    follow_ups: tuple[FollowUp, ...] = FOLLOW_UPS
    runner: Any = None  # wakes background work after a commit: the embedded runner or procrastinate's
    checkpointer: Checkpointer | None = None  # SQLite: keeps the WAL short, off the writers' path
    reconciler: Any = None  # PostgreSQL: wakes due tasks whose wake-up was lost, as the workers do
    uows: UnitsOfWork = field(init=False)  # background work's: statements unbounded
    requests: UnitsOfWork = field(init=False)  # requests': each statement bounded (statement_timeout_ms)
    writer: Writer = field(init=False)
    in_use: Any = None  # SQLite, while serving: the shared lock that keeps a restore off (``store.backup``)

    def __post_init__(self) -> None:
        settings = self.settings
        runs = AutomationRuns(
            lambda: self.outbound,
            settings.run_lease_seconds,
            vault=lambda: self.vault,
            files_dir=settings.files_dir,
        )
        deliveries = WebhookDeliveries(
            lambda: self.outbound,
            lease_seconds=settings.run_lease_seconds,
            disable_after_seconds=settings.webhook_disable_after_seconds,
        )
        retention = Rounds(settings.retention_days, every_ms=int(settings.retention_every_seconds * 1000))
        self.kinds = Kinds(*KINDS, runs.kind(), deliveries.kind(), retention.kind())
        self.uows = UnitsOfWork(self.engine, follow_ups=self.follow_ups, deadline_ms=0)
        self.requests = UnitsOfWork(
            self.engine, follow_ups=self.follow_ups, deadline_ms=self.settings.statement_timeout_ms
        )
        self.writer = Writer(self.requests)

    @cached_property
    def outbound(self) -> Outbound:
        """Calls to external services (automation steps, webhook deliveries), refused to private addresses
        but the allowed."""
        allow = [a.strip() for a in self.settings.outbound_allow.split(",") if a.strip()]
        return Outbound(allow=allow)

    @cached_property
    def cursor_key(self) -> bytes:
        """The key list cursors are signed with (``Settings.secret``)."""
        return self.settings.secret()

    @cached_property
    def vault(self) -> Vault:
        """Seals and opens connectors' credentials (``Settings.connector_keys``)."""
        return Vault(self.settings.connector_keys())

    def run(self, use_case: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``use_case(uows, ...)`` here, in transactions of its own, each statement bounded as a request's:
        reads, the CLI, long writes (a bulk submission, from the thread pool)."""
        return use_case(self.requests, *args, **kwargs)

    async def write(self, use_case: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A request's short write: on SQLite together with the others waiting, in one transaction (group
        commit, ``store.writer``); on PostgreSQL on the thread pool. Its result once it is durable."""
        return await self.writer.run(use_case, *args, **kwargs)

    def start_background(self) -> None:
        """Run background work in this process (embedded) or hand it to ``procession worker`` processes."""
        self.in_use = hold(self.settings.url)  # SQLite: a restore waits until this process is gone
        ensure_tasks(self.engine)  # periodic work: every team's retention task
        if self.settings.is_sqlite:
            self.checkpointer = Checkpointer(self.engine)
            self.checkpointer.start()
        embedded = self.settings.embedded_worker
        if embedded or (embedded is None and self.settings.is_sqlite):
            from procession.engine.embedded import EmbeddedRunner

            self.runner = EmbeddedRunner(self.uows, self.kinds)
            self.runner.start()
        elif not self.settings.is_sqlite:
            from procession.engine.distributed import DistributedWaker, Reconciler

            self.runner = DistributedWaker(self.uows, self.settings.url, self.lease_ms)
            self.reconciler = Reconciler(self.runner)  # the workers' reconciler, here too
            self.reconciler.start()
        self.uows.waker = self.requests.waker = self.runner

    @property
    def lease_ms(self) -> int:
        return int(self.settings.lease_seconds * 1000)

    def close(self) -> None:
        if self.reconciler is not None:
            self.reconciler.stop()
        if self.runner is not None:
            self.runner.stop()
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.writer.close()
        if self.in_use is not None:
            self.in_use.close()
        if "outbound" in self.__dict__:
            self.outbound.close()
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
    engine = make_engine(
        settings.url,
        check_tenancy=settings.check_tenancy,
        statement_timeout_ms=settings.statement_timeout_ms,
        connections=settings.db_connections,
    )
    services = Services(settings=settings, engine=engine)
    services.cursor_key  # noqa: B018 (read or made now: a data folder that cannot hold it fails at start)
    services.vault  # noqa: B018 (and keys that are not Fernet keys fail at start, not at the first run)
    return services
