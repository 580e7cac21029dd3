"""Repositories: every query lives here. Team-scoped ones take the team at construction and apply it once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from procession.domain.attributes import Attribute
from procession.domain.events import EventRecord
from procession.domain.procedure import Entity, Procedure
from procession.domain.process import Event, Process
from procession.domain.query import SortKey
from procession.store import tables as t
from procession.store.search import search_statement

_procedures: dict[tuple[str, int], Procedure] = {}
_entities: dict[tuple[str, int], Entity] = {}


@dataclass(frozen=True)
class ApiKey:
    id: str
    team_id: str
    role: str
    user_id: str | None


class Repository:
    def __init__(self, conn: sa.Connection, team_id: str) -> None:
        self.conn, self.team_id = conn, team_id


class Teams:
    """Teams and API keys: the only repository not scoped to a team (it finds the team)."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def by_slug(self, slug: str) -> str | None:
        return self.conn.scalar(sa.select(t.teams.c.id).where(t.teams.c.slug == slug))

    def add(self, *, id: str, slug: str, name: str, now: int) -> None:
        self.conn.execute(t.teams.insert().values(id=id, slug=slug, name=name, created_at=now))

    def key(self, key_hash: str) -> ApiKey | None:
        row = self.conn.execute(
            sa.select(t.api_keys.c.id, t.api_keys.c.team_id, t.api_keys.c.role, t.api_keys.c.user_id).where(
                t.api_keys.c.key_hash == key_hash, t.api_keys.c.revoked_at.is_(None)
            )
        ).first()
        return ApiKey(*row) if row else None


class Keys(Repository):
    def add(self, **values: Any) -> None:
        self.conn.execute(t.api_keys.insert().values(team_id=self.team_id, **values))

    def list(self) -> list[dict[str, Any]]:
        c = t.api_keys.c
        rows = self.conn.execute(
            sa.select(c.id, c.prefix, c.role, c.user_id, c.label, c.created_at, c.revoked_at)
            .where(c.team_id == self.team_id)
            .order_by(c.created_at, c.id)
        )
        return [r._asdict() for r in rows]

    def revoke(self, key_id: str, now: int) -> bool:
        c = t.api_keys.c
        result = self.conn.execute(
            t.api_keys.update()
            .where(c.team_id == self.team_id, c.id == key_id, c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return result.rowcount == 1


class Users(Repository):
    def id_of(self, ref: str) -> str | None:
        """The id of the user whose id or username is ``ref``."""
        c = t.users.c
        return self.conn.scalar(
            sa.select(c.id).where(c.team_id == self.team_id, sa.or_(c.id == ref, c.username == ref))
        )

    def list(self) -> list[dict[str, Any]]:
        c = t.users.c
        rows = self.conn.execute(
            sa.select(c.id, c.username, c.name, c.role).where(c.team_id == self.team_id).order_by(c.username)
        )
        return [r._asdict() for r in rows]

    def add(self, **values: Any) -> None:
        self.conn.execute(t.users.insert().values(team_id=self.team_id, **values))


class Pods(Repository):
    def id_of(self, ref: str) -> str | None:
        c = t.pods.c
        return self.conn.scalar(
            sa.select(c.id).where(c.team_id == self.team_id, sa.or_(c.id == ref, c.short_id == ref))
        )

    def list(self) -> list[dict[str, Any]]:
        c = t.pods.c
        rows = self.conn.execute(
            sa.select(c.id, c.short_id, c.name, c.members)
            .where(c.team_id == self.team_id)
            .order_by(c.short_id)
        )
        return [{"id": r.id, "shortId": r.short_id, "name": r.name, "members": r.members} for r in rows]

    def add(self, **values: Any) -> None:
        self.conn.execute(t.pods.insert().values(team_id=self.team_id, **values))


class Procedures(Repository):
    def get(self, ref: str) -> Procedure | None:
        """The procedure whose shortId (or id) is ``ref``."""
        c = t.procedures.c
        row = self.conn.execute(
            sa.select(c.id, c.version).where(
                c.team_id == self.team_id, sa.or_(c.short_id == ref, c.id == ref)
            )
        ).first()
        if row is None:
            return None
        cached = _procedures.get((row.id, row.version))
        if cached is None:
            full = self.conn.execute(
                sa.select(c.id, c.short_id, c.label, c.version, c.definition).where(c.id == row.id)
            ).one()
            cached = Procedure.from_row(**full._mapping)
            _procedures[(row.id, row.version)] = cached
        return cached

    def list(self) -> list[Procedure]:
        c = t.procedures.c
        ids = self.conn.scalars(sa.select(c.id).where(c.team_id == self.team_id).order_by(c.short_id)).all()
        return [p for p in (self.get(i) for i in ids) if p is not None]

    def save(self, procedure: Procedure, *, expected_version: int | None) -> int:
        """Insert (``expected_version`` None) or update; returns the new version, 0 when the version is stale."""
        c = t.procedures.c
        values = {
            "short_id": procedure.short_id,
            "label": procedure.label,
            "definition": procedure.definition(),
        }
        if expected_version is None:
            self.conn.execute(
                t.procedures.insert().values(id=procedure.id, team_id=self.team_id, version=1, **values)
            )
            return 1
        result = self.conn.execute(
            t.procedures.update()
            .where(c.id == procedure.id, c.team_id == self.team_id, c.version == expected_version)
            .values(version=expected_version + 1, **values)
        )
        return expected_version + 1 if result.rowcount == 1 else 0

    def ensure_counter(self, procedure_id: str, attribute_id: str, start: int) -> None:
        c = t.counters.c
        exists = self.conn.scalar(
            sa.select(c.value).where(c.procedure_id == procedure_id, c.attribute_id == attribute_id)
        )
        if exists is None:
            self.conn.execute(
                t.counters.insert().values(
                    procedure_id=procedure_id, attribute_id=attribute_id, value=start - 1
                )
            )

    def next_number(self, procedure_id: str, attribute_id: str) -> int:
        """The next number of a generated-id attribute (its counter row is locked until commit)."""
        c = t.counters.c
        return self.conn.execute(
            t.counters.update()
            .where(c.procedure_id == procedure_id, c.attribute_id == attribute_id)
            .values(value=c.value + 1)
            .returning(c.value)
        ).scalar_one()


class Entities(Repository):
    def get(self, ref: str) -> Entity | None:
        c = t.entities.c
        row = self.conn.execute(
            sa.select(c.id, c.version).where(
                c.team_id == self.team_id, sa.or_(c.short_id == ref, c.id == ref)
            )
        ).first()
        if row is None:
            return None
        cached = _entities.get((row.id, row.version))
        if cached is None:
            full = self.conn.execute(
                sa.select(c.id, c.short_id, c.label, c.version, c.definition).where(c.id == row.id)
            ).one()
            d = full.definition
            cached = Entity(
                id=full.id,
                short_id=full.short_id,
                label=full.label,
                version=full.version,
                attributes=[Attribute.from_dict(a) for a in d["attributes"]],
                primary_key=d.get("primaryKey"),
            )
            _entities[(row.id, row.version)] = cached
        return cached

    def list(self) -> list[Entity]:
        c = t.entities.c
        ids = self.conn.scalars(sa.select(c.id).where(c.team_id == self.team_id).order_by(c.short_id)).all()
        return [e for e in (self.get(i) for i in ids) if e is not None]

    def save(self, entity: Entity, *, expected_version: int | None) -> int:
        c = t.entities.c
        values = {
            "short_id": entity.short_id,
            "label": entity.label,
            "definition": {
                "attributes": [a.to_dict() for a in entity.attributes],
                "primaryKey": entity.primary_key,
            },
        }
        if expected_version is None:
            self.conn.execute(
                t.entities.insert().values(id=entity.id, team_id=self.team_id, version=1, **values)
            )
            return 1
        result = self.conn.execute(
            t.entities.update()
            .where(c.id == entity.id, c.team_id == self.team_id, c.version == expected_version)
            .values(version=expected_version + 1, **values)
        )
        return expected_version + 1 if result.rowcount == 1 else 0


class Records(Repository):
    def by_pk(self, entity_id: str, pk_value: str) -> tuple[str, dict[str, Any]] | None:
        c = t.records.c
        row = self.conn.execute(
            sa.select(c.id, c.data).where(
                c.team_id == self.team_id, c.entity_id == entity_id, c.pk_value == pk_value
            )
        ).first()
        return (row.id, row.data) if row else None

    def exists(self, record_id: str, entity_id: str | None) -> bool:
        c = t.records.c
        q = sa.select(c.id).where(c.team_id == self.team_id, c.id == record_id)
        if entity_id:
            q = q.where(c.entity_id == entity_id)
        return self.conn.scalar(q) is not None

    def get(self, record_id: str) -> dict[str, Any] | None:
        c = t.records.c
        row = self.conn.execute(
            sa.select(c.id, c.entity_id, c.data).where(c.team_id == self.team_id, c.id == record_id)
        ).first()
        return row._asdict() if row else None

    def add(self, *, id: str, entity_id: str, pk_value: str | None, data: dict[str, Any], now: int) -> None:
        self.conn.execute(
            t.records.insert().values(
                id=id,
                team_id=self.team_id,
                entity_id=entity_id,
                pk_value=pk_value,
                data=data,
                created_at=now,
                updated_at=now,
            )
        )

    def update_data(self, record_id: str, data: dict[str, Any], now: int) -> None:
        c = t.records.c
        self.conn.execute(
            t.records.update()
            .where(c.team_id == self.team_id, c.id == record_id)
            .values(data=data, updated_at=now)
        )


_PROCESS_COLUMNS = {
    "id": "id",
    "team": "team_id",
    "procedure": "procedure_id",
    "created_by": "created_by",
    "status": "status",
    "state": "state_id",
    "created_at": "created_at",
    "updated_at": "updated_at",
    "data": "data",
    "derived_data": "derived_data",
    "assigned_to": "assigned_to",
    "belongs_to": "belongs_to",
    "entity": "entity_id",
    "record": "record_id",
    "next_action_at": "next_action_at",
    "completed_at": "completed_at",
    "cancelled_at": "cancelled_at",
    "primary_booking": "primary_booking",
    "parent_procedure": "parent_procedure_id",
    "parent_process": "parent_process_id",
    "first_assigned_to": "first_assigned_to",
    "first_assigned_at": "first_assigned_at",
    "last_assigned_at": "last_assigned_at",
    "is_deleted": "is_deleted",
    "version": "version",
}


_FIXED = ("id", "team", "procedure", "created_by", "created_at")


class Processes(Repository):
    def add(self, process: Process, *, pk_value: str | None) -> None:
        values = {col: getattr(process, name) for name, col in _PROCESS_COLUMNS.items()}
        self.conn.execute(t.processes.insert().values(pk_value=pk_value, **values))

    def exists(self, process_id: str, procedure_id: str | None = None) -> bool:
        c = t.processes.c
        q = sa.select(c.id).where(c.team_id == self.team_id, c.id == process_id)
        if procedure_id:
            q = q.where(c.procedure_id == procedure_id)
        return self.conn.scalar(q) is not None

    def id_by_pk(self, procedure_id: str, pk_value: str) -> str | None:
        c = t.processes.c
        return self.conn.scalar(
            sa.select(c.id).where(
                c.team_id == self.team_id, c.procedure_id == procedure_id, c.pk_value == pk_value
            )
        )

    def _select(self) -> Any:
        c = t.processes.c
        return sa.select(*(c[col].label(name) for name, col in _PROCESS_COLUMNS.items())).where(
            c.team_id == self.team_id
        )

    def get(self, process_id: str, *, for_update: bool = False) -> Process | None:
        """The process with this id; ``for_update`` locks the row until commit (PostgreSQL; SQLite's writer
        lock already serialises writers)."""
        stmt = self._select().where(t.processes.c.id == process_id)
        if for_update:
            stmt = stmt.with_for_update()
        row = self.conn.execute(stmt).first()
        return Process(**row._asdict()) if row else None

    def save(self, process: Process, *, pk_value: str | None) -> None:
        """Write every mutable field of ``process`` back."""
        values = {col: getattr(process, name) for name, col in _PROCESS_COLUMNS.items() if name not in _FIXED}
        c = t.processes.c
        self.conn.execute(
            t.processes.update()
            .where(c.team_id == self.team_id, c.id == process.id)
            .values(pk_value=pk_value, **values)
        )

    def get_many(self, ids: list[str]) -> dict[str, Process]:
        """The processes with these ids, locked until commit (PostgreSQL)."""
        out: dict[str, Process] = {}
        for start in range(0, len(ids), 900):
            stmt = self._select().where(t.processes.c.id.in_(ids[start : start + 900])).with_for_update()
            out.update((row.id, Process(**row._asdict())) for row in self.conn.execute(stmt))
        return out

    def ids_by_pk(self, procedure_id: str, values: list[str]) -> dict[str, str]:
        """Primary-key value -> process id, for the values that exist."""
        c = t.processes.c
        out: dict[str, str] = {}
        for start in range(0, len(values), 900):
            rows = self.conn.execute(
                sa.select(c.pk_value, c.id).where(
                    c.team_id == self.team_id,
                    c.procedure_id == procedure_id,
                    c.pk_value.in_(values[start : start + 900]),
                )
            )
            out.update((pk, pid) for pk, pid in rows)
        return out

    def save_many(self, processes: list[tuple[Process, str | None]]) -> None:
        """Write back many processes (with their primary-key values) in one batch."""
        if not processes:
            return
        c = t.processes.c
        names = [n for n in _PROCESS_COLUMNS if n not in _FIXED]
        stmt = (
            t.processes.update()
            .where(c.id == sa.bindparam("b_id"))
            .values(
                pk_value=sa.bindparam("b_pk"), **{_PROCESS_COLUMNS[n]: sa.bindparam(f"b_{n}") for n in names}
            )
        )
        self.conn.execute(
            stmt,
            [{"b_id": p.id, "b_pk": pk, **{f"b_{n}": getattr(p, n) for n in names}} for p, pk in processes],
        )

    def search(
        self,
        procedure_id: str,
        *,
        where: Any,
        keys: list[SortKey],
        after: list[Any] | None,
        skip: int,
        limit: int,
        include_deleted: bool,
    ) -> list[tuple[Process, list[Any]]]:
        """One page of processes (``limit`` + 1 rows, to tell whether there are more) with their sort values."""
        base = self._select().where(t.processes.c.procedure_id == procedure_id)
        if not include_deleted:
            base = base.where(t.processes.c.is_deleted.is_(False))
        stmt = search_statement(base, where, keys, after, skip, limit)
        width = len(_PROCESS_COLUMNS)
        return [
            (Process(**dict(zip(_PROCESS_COLUMNS, row[:width], strict=True))), list(row[width:]))
            for row in self.conn.execute(stmt)
        ]


class Events(Repository):
    def add(self, process_id: str, events: list[Event], *, actor: str | None, now: int) -> None:
        self.conn.execute(
            t.events.insert(),
            [
                {
                    "team_id": self.team_id,
                    "process_id": process_id,
                    "type": e.type,
                    "actor": actor,
                    "payload": e.payload,
                    "created_at": now,
                }
                for e in events
            ],
        )

    def add_many(self, events: list[tuple[str, Event]], *, actor: str | None, now: int) -> None:
        """Many processes' events in one batch: ``(process id, event)`` pairs."""
        if events:
            self.conn.execute(
                t.events.insert(),
                [
                    {
                        "team_id": self.team_id,
                        "process_id": pid,
                        "type": e.type,
                        "actor": actor,
                        "payload": e.payload,
                        "created_at": now,
                    }
                    for pid, e in events
                ],
            )

    def for_process(self, process_id: str, *, after: int = 0, limit: int = 100) -> list[EventRecord]:
        c = t.events.c
        rows = self.conn.execute(
            sa.select(c.id, c.process_id, c.type, c.actor, c.payload, c.created_at)
            .where(c.team_id == self.team_id, c.process_id == process_id, c.id > after)
            .order_by(c.id)
            .limit(limit)
        )
        return [EventRecord(**r._mapping) for r in rows]


class Files(Repository):
    def exists(self, file_id: str) -> bool:
        c = t.files.c
        return self.conn.scalar(sa.select(c.id).where(c.team_id == self.team_id, c.id == file_id)) is not None

    def get(self, file_id: str) -> dict[str, Any] | None:
        c = t.files.c
        row = self.conn.execute(
            sa.select(c.id, c.filename, c.filetype, c.size, c.created_at).where(
                c.team_id == self.team_id, c.id == file_id
            )
        ).first()
        return row._asdict() if row else None

    def add(self, **values: Any) -> None:
        self.conn.execute(t.files.insert().values(team_id=self.team_id, **values))


class Idempotency(Repository):
    def get(self, key: str) -> tuple[str, int, Any] | None:
        c = t.idempotency_keys.c
        row = self.conn.execute(
            sa.select(c.request_hash, c.status_code, c.response).where(
                c.team_id == self.team_id, c.key == key
            )
        ).first()
        return (row.request_hash, row.status_code, row.response) if row else None

    def put(self, key: str, *, request_hash: str, status_code: int, response: Any, now: int) -> None:
        self.conn.execute(
            t.idempotency_keys.insert().values(
                team_id=self.team_id,
                key=key,
                request_hash=request_hash,
                status_code=status_code,
                response=response,
                created_at=now,
            )
        )
