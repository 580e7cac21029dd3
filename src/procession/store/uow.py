"""The unit of work: one transaction, the team's repositories, and the only place that commits."""

from __future__ import annotations

from types import TracebackType

import sqlalchemy as sa

from procession.store import repositories as r


class UnitOfWork:
    """``with UnitOfWork(engine, team_id) as uow: ...; uow.commit()``; anything not committed rolls back."""

    def __init__(self, engine: sa.Engine, team_id: str, *, write: bool = True) -> None:
        self.engine, self.team_id, self.write = engine, team_id, write

    def __enter__(self) -> UnitOfWork:
        conn = self.engine.connect()
        if self.write:
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        self.conn = conn
        self.tx = conn.begin()
        team = self.team_id
        self.users = r.Users(conn, team)
        self.pods = r.Pods(conn, team)
        self.keys = r.Keys(conn, team)
        self.procedures = r.Procedures(conn, team)
        self.entities = r.Entities(conn, team)
        self.records = r.Records(conn, team)
        self.processes = r.Processes(conn, team)
        self.events = r.Events(conn, team)
        self.files = r.Files(conn, team)
        self.idempotency = r.Idempotency(conn, team)
        return self

    def commit(self) -> None:
        self.tx.commit()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.tx.is_active:
            self.tx.rollback()
        self.conn.close()


class Lookups:
    """The domain's ``Lookups`` answered from the unit of work's repositories."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    def user_id(self, ref: str) -> str | None:
        return self.uow.users.id_of(ref)

    def pod_id(self, ref: str) -> str | None:
        return self.uow.pods.id_of(ref)

    def file_exists(self, file_id: str) -> bool:
        return self.uow.files.exists(file_id)

    def record_exists(self, record_id: str, entity_id: str | None) -> bool:
        return self.uow.records.exists(record_id, entity_id)

    def process_exists(self, process_id: str, procedure_id: str | None) -> bool:
        return self.uow.processes.exists(process_id, procedure_id)
