"""Repositories: every query lives here. Team-scoped ones take the team at construction and apply it once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from procession.domain.events import EventRecord
from procession.domain.procedure import MAX_KEY, Entity, Procedure, Schema
from procession.domain.process import Event, Process
from procession.domain.query import SortKey
from procession.store import tables as t
from procession.store.db import Statement, driver_rows
from procession.store.search import search_statement

# The statements every create runs are built once, here, with their values as bound parameters, and run
# as ``db.Statement``s (no statement and cache key rebuilt per call). The team's parameter is ``b_team``,
# bound by ``Repository``'s helpers (``b_`` names never clash with a column).
TEAM: sa.BindParameter[str] = sa.bindparam("b_team")
REF: sa.BindParameter[str] = sa.bindparam("b_ref")  # an id or a shortId
ID: sa.BindParameter[str] = sa.bindparam("b_id")


@dataclass(frozen=True)
class ApiKey:
    id: str
    team_id: str
    role: str
    user_id: str | None


class Repository:
    def __init__(self, conn: sa.Connection, team_id: str) -> None:
        self.conn, self.team_id = conn, team_id

    def _rekey(self, table: sa.Table, owner: sa.Column, schema: Schema) -> None:
        """Recompute the primary-key value of every row of one owner (a procedure's processes, an entity's
        records) from their ``data``, after the owner's primary key changed: cleared first, so rows trading
        values never meet in the unique index; values two rows share raise ``IntegrityError``, values longer
        than ``MAX_KEY`` a ``ValueError``."""
        c = table.c
        mine = sa.and_(c.team_id == self.team_id, owner == schema.id)
        self.conn.execute(table.update().where(mine).values(pk_value=None))
        if schema.primary_key is None:
            return
        keys = (
            (row_id, schema.key_of(data))
            for row_id, data in self.conn.execute(sa.select(c.id, c.data).where(mine))
        )
        keyed = [{"b_id": row_id, "b_pk": key} for row_id, key in keys if key is not None]
        if any(len(k["b_pk"]) > MAX_KEY for k in keyed):
            raise ValueError(f"a value is longer than {MAX_KEY} characters")
        if keyed:
            self.conn.execute(
                table.update()
                .where(mine, c.id == sa.bindparam("b_id"))
                .values(pk_value=sa.bindparam("b_pk")),
                keyed,
            )

    def _first(self, stmt: Statement, **params: Any) -> tuple[Any, ...] | None:
        """The first row of a statement built once (``b_`` parameters), this team's id bound to ``TEAM``."""
        params["b_team"] = self.team_id
        return stmt.first(self.conn, params)

    def _scalar(self, stmt: Statement, **params: Any) -> Any:
        params["b_team"] = self.team_id
        return stmt.scalar(self.conn, params)

    def _write(self, stmt: Statement, **params: Any) -> None:
        params["b_team"] = self.team_id
        stmt.rows(self.conn, params)


_K = t.api_keys.c
KEY_BY_HASH = Statement(
    sa.select(_K.id, _K.team_id, _K.role, _K.user_id).where(
        _K.key_hash == sa.bindparam("b_hash"), _K.revoked_at.is_(None)
    )
)


def key_by_hash(engine: sa.Engine, key_hash: str) -> ApiKey | None:
    """The active (not revoked) key with this hash, read on its own (the first thing a request does)."""
    row = KEY_BY_HASH.first_on_own(engine, {"b_hash": key_hash})
    return ApiKey(*row) if row else None


class Teams:
    """Teams and API keys: the only repository not scoped to a team (it finds the team)."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def by_slug(self, slug: str) -> str | None:
        return self.conn.scalar(sa.select(t.teams.c.id).where(t.teams.c.slug == slug))

    def add(self, *, id: str, slug: str, name: str, now: int) -> None:
        self.conn.execute(t.teams.insert().values(id=id, slug=slug, name=name, created_at=now))


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


_U = t.users.c
USER_ID = Statement(sa.select(_U.id).where(_U.team_id == TEAM, sa.or_(_U.id == REF, _U.username == REF)))


class Users(Repository):
    def id_of(self, ref: str) -> str | None:
        """The id of the user whose id or username is ``ref``."""
        return self._scalar(USER_ID, b_ref=ref)

    def list(self) -> list[dict[str, Any]]:
        c = t.users.c
        rows = self.conn.execute(
            sa.select(c.id, c.username, c.name, c.role).where(c.team_id == self.team_id).order_by(c.username)
        )
        return [r._asdict() for r in rows]

    def add(self, **values: Any) -> None:
        self.conn.execute(t.users.insert().values(team_id=self.team_id, **values))


_PO = t.pods.c
POD_ID = Statement(sa.select(_PO.id).where(_PO.team_id == TEAM, sa.or_(_PO.id == REF, _PO.short_id == REF)))


class Pods(Repository):
    def id_of(self, ref: str) -> str | None:
        """The id of the pod whose id or shortId is ``ref``."""
        return self._scalar(POD_ID, b_ref=ref)

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


D = TypeVar("D", Procedure, Entity)


class Schemas(Repository, Generic[D]):
    """Versioned schema documents (procedures, entities): found by shortId or id, parsed once per version
    (shared by every request), saved with optimistic versioning."""

    table: sa.Table
    parse: Any  # Procedure.from_row or Entity.from_row
    _version: Statement
    _full: Statement
    _parsed: dict[tuple[str, int], D]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        c = cls.table.c
        cls._version = Statement(
            sa.select(c.id, c.version).where(c.team_id == TEAM, sa.or_(c.short_id == REF, c.id == REF))
        )
        cls._full = Statement(
            sa.select(c.id, c.short_id, c.label, c.version, c.definition).where(
                c.team_id == TEAM, c.id == ID
            ),
            json_columns=[4],
        )
        cls._parsed = {}

    def get(self, ref: str) -> D | None:
        """The document whose shortId (or id) is ``ref``, or None."""
        row = self._first(self._version, b_ref=ref)
        if row is None:
            return None
        found = self._parsed.get((row[0], row[1]))
        if found is None:
            full = self._first(self._full, b_id=row[0])
            assert full is not None
            doc_id, short_id, label, version, definition = full
            found = self.parse(
                id=doc_id, short_id=short_id, label=label, version=version, definition=definition
            )
            self._parsed[(doc_id, version)] = found
        return found

    def list(self) -> list[D]:
        c = self.table.c
        ids = self.conn.scalars(sa.select(c.id).where(c.team_id == self.team_id).order_by(c.short_id)).all()
        return [d for d in (self.get(i) for i in ids) if d is not None]

    def save(self, doc: D, *, expected_version: int | None) -> int:
        """Insert (``expected_version`` None) or update; returns the new version, 0 when the version is stale."""
        c = self.table.c
        values = {"short_id": doc.short_id, "label": doc.label, "definition": doc.definition()}
        if expected_version is None:
            self.conn.execute(
                self.table.insert().values(id=doc.id, team_id=self.team_id, version=1, **values)
            )
            return 1
        result = self.conn.execute(
            self.table.update()
            .where(c.id == doc.id, c.team_id == self.team_id, c.version == expected_version)
            .values(version=expected_version + 1, **values)
        )
        return expected_version + 1 if result.rowcount == 1 else 0


_CO = t.counters.c
NEXT_NUMBER = Statement(
    t.counters.update()
    .where(_CO.procedure_id == sa.bindparam("b_procedure"), _CO.attribute_id == sa.bindparam("b_attribute"))
    .values(value=_CO.value + 1)
    .returning(_CO.value)
)


class Procedures(Schemas[Procedure]):
    table = t.procedures
    parse = Procedure.from_row

    def ensure_counter(self, procedure_id: str, attribute_id: str, start: int) -> None:
        """The counter of a generated-id attribute, from ``start``: a row of ``counters``, and on PostgreSQL
        a sequence as well (see ``next_number``)."""
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
            if self.conn.dialect.name == "postgresql":
                self.conn.exec_driver_sql(
                    f'CREATE SEQUENCE IF NOT EXISTS "{counter_sequence(attribute_id)}" MINVALUE {min(start, 1)} START {start}'
                )

    def next_number(self, procedure_id: str, attribute_id: str) -> int:
        """The next number of a generated-id attribute. On SQLite, from its ``counters`` row, in the
        transaction (writers take turns anyway). On PostgreSQL, from its sequence: a row everyone updates
        would be locked by each create until it commits, one create at a time; ``nextval`` never waits
        (a create that rolls back leaves a gap, as sequences do)."""
        if self.conn.dialect.name == "postgresql":
            return int(
                self.conn.exec_driver_sql(
                    f"SELECT nextval('\"{counter_sequence(attribute_id)}\"')"
                ).scalar_one()
            )
        params = {"b_procedure": procedure_id, "b_attribute": attribute_id}
        (number,) = NEXT_NUMBER.rows(self.conn, params)
        return int(number[0])


def counter_sequence(attribute_id: str) -> str:
    """The PostgreSQL sequence of a generated-id attribute (ids are unique, so is the name)."""
    return "counter_" + attribute_id.replace("-", "")


class Entities(Schemas[Entity]):
    table = t.entities
    parse = Entity.from_row


_RE = t.records.c
RECORD_BY_PK = Statement(
    sa.select(_RE.id, _RE.data).where(
        _RE.team_id == TEAM, _RE.entity_id == sa.bindparam("b_entity"), _RE.pk_value == sa.bindparam("b_pk")
    ),
    json_columns=[1],
)
_RECORD_EXISTS = sa.select(_RE.id).where(_RE.team_id == TEAM, _RE.id == ID)
RECORD_EXISTS = Statement(_RECORD_EXISTS)
RECORD_OF_ENTITY_EXISTS = Statement(_RECORD_EXISTS.where(_RE.entity_id == sa.bindparam("b_entity")))
INSERT_RECORD = Statement(t.records.insert(), json_params=["data"])
UPDATE_RECORD_DATA = Statement(
    t.records.update()
    .where(_RE.team_id == TEAM, _RE.id == ID)
    .values(data=sa.bindparam("b_data"), updated_at=sa.bindparam("b_now")),
    json_params=["b_data"],
)


class Records(Repository):
    def rekey(self, entity: Entity) -> None:
        self._rekey(t.records, t.records.c.entity_id, entity)

    def by_pk(self, entity_id: str, pk_value: str) -> tuple[str, dict[str, Any]] | None:
        row = self._first(RECORD_BY_PK, b_entity=entity_id, b_pk=pk_value)
        return (row[0], row[1]) if row else None

    def exists(self, record_id: str, entity_id: str | None) -> bool:
        if entity_id:
            return self._first(RECORD_OF_ENTITY_EXISTS, b_id=record_id, b_entity=entity_id) is not None
        return self._first(RECORD_EXISTS, b_id=record_id) is not None

    def get(self, record_id: str) -> dict[str, Any] | None:
        c = t.records.c
        row = self.conn.execute(
            sa.select(c.id, c.entity_id, c.data).where(c.team_id == self.team_id, c.id == record_id)
        ).first()
        return row._asdict() if row else None

    def add(self, *, id: str, entity_id: str, pk_value: str | None, data: dict[str, Any], now: int) -> None:
        row = {
            "id": id,
            "team_id": self.team_id,
            "entity_id": entity_id,
            "pk_value": pk_value,
            "data": data,
            "created_at": now,
            "updated_at": now,
        }
        INSERT_RECORD.rows(self.conn, row)

    def update_data(self, record_id: str, data: dict[str, Any], now: int) -> None:
        self._write(UPDATE_RECORD_DATA, b_id=record_id, b_data=data, b_now=now)


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


_COLUMN_LIST = ", ".join(_PROCESS_COLUMNS.values())  # in the order of Process's fields
_JSON_AT = [list(_PROCESS_COLUMNS).index(name) for name in ("data", "derived_data")]
_INSERTED = [(name, col) for name, col in _PROCESS_COLUMNS.items() if name != "team"]

_P = t.processes.c
INSERT_PROCESS = Statement(t.processes.insert(), json_params=["data", "derived_data"])
_PROCESS_EXISTS = sa.select(_P.id).where(_P.team_id == TEAM, _P.id == ID)
PROCESS_EXISTS = Statement(_PROCESS_EXISTS)
PROCESS_OF_PROCEDURE_EXISTS = Statement(_PROCESS_EXISTS.where(_P.procedure_id == sa.bindparam("b_procedure")))
PROCESS_ID_BY_PK = Statement(
    sa.select(_P.id).where(
        _P.team_id == TEAM,
        _P.procedure_id == sa.bindparam("b_procedure"),
        _P.pk_value == sa.bindparam("b_pk"),
    )
)


def _violates(error: IntegrityError, index: str, columns: str) -> bool:
    """Whether ``error`` is a violation of the unique index ``index`` (PostgreSQL names it; SQLite names
    its ``columns``)."""
    diag = getattr(error.orig, "diag", None)
    if diag is not None:
        return bool(diag.constraint_name == index)
    return str(error.orig) == f"UNIQUE constraint failed: {columns}"


class Processes(Repository):
    def rekey(self, procedure: Procedure) -> None:
        self._rekey(t.processes, t.processes.c.procedure_id, procedure)

    def add(self, process: Process, *, pk_value: str | None) -> bool:
        """Insert a new process; False when another process of its procedure has ``pk_value`` (the unique
        index refused it: nothing was written, and on PostgreSQL the transaction can only roll back)."""
        row = {col: getattr(process, name) for name, col in _INSERTED}
        row["team_id"], row["pk_value"] = self.team_id, pk_value
        try:
            INSERT_PROCESS.rows(self.conn, row)
        except IntegrityError as e:
            if pk_value is not None and _violates(
                e, "ux_processes_pk", "processes.procedure_id, processes.pk_value"
            ):
                return False
            raise
        return True

    def exists(self, process_id: str, procedure_id: str | None = None) -> bool:
        if procedure_id:
            found = self._first(PROCESS_OF_PROCEDURE_EXISTS, b_id=process_id, b_procedure=procedure_id)
        else:
            found = self._first(PROCESS_EXISTS, b_id=process_id)
        return found is not None

    def id_by_pk(self, procedure_id: str, pk_value: str) -> str | None:
        return self._scalar(PROCESS_ID_BY_PK, b_procedure=procedure_id, b_pk=pk_value)

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
        return Process(*row) if row else None

    def get_many(
        self, procedure_id: str, ids: list[str], pks: list[str]
    ) -> tuple[dict[str, Process], dict[str, str]]:
        """The processes named by id, or by primary-key value (``pks``, of ``procedure_id``), in one read,
        locked until commit (PostgreSQL); and primary-key value -> id for the values found."""
        where = "team_id = {0} AND (id IN {1} OR (procedure_id = {0} AND pk_value IN {1}))"
        rows = driver_rows(
            self.conn,
            f"SELECT {_COLUMN_LIST}, pk_value FROM processes WHERE "
            + where.format("?", "(SELECT value FROM json_each(?))"),
            # locked in id order, so two chunks sharing processes wait for each other, never deadlock
            f"SELECT {_COLUMN_LIST}, pk_value FROM processes WHERE "
            + where.replace("IN {1}", "= ANY({1})").format("%s", "%s")
            + " ORDER BY id FOR UPDATE",
            [self.team_id, ids, procedure_id, pks],
            json_columns=_JSON_AT,
        )
        out, wanted, pk_ids = {}, set(pks), {}
        for *fields, pk_value in rows:
            process = out[fields[0]] = Process(*fields)
            process.is_deleted = bool(process.is_deleted)  # SQLite gives 0/1
            if pk_value in wanted and process.procedure == procedure_id:  # unique within its procedure
                pk_ids[pk_value] = process.id
        return out, pk_ids

    def ids_by_pk(self, procedure_id: str, values: list[str]) -> dict[str, str]:
        """Primary-key value -> process id, for the values that exist."""
        where = "WHERE team_id = {0} AND procedure_id = {0} AND pk_value"
        rows = driver_rows(
            self.conn,
            f"SELECT pk_value, id FROM processes {where.format('?')} IN (SELECT value FROM json_each(?))",
            f"SELECT pk_value, id FROM processes {where.format('%s')} = ANY(%s)",
            [self.team_id, procedure_id, values],
        )
        return dict(rows)

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
        return [(Process(*row[:width]), list(row[width:])) for row in self.conn.execute(stmt)]


INSERT_EVENTS = Statement(t.events.insert(), json_params=["payload"])


class Events(Repository):
    def add(self, process_id: str, events: list[Event], *, actor: str | None, now: int) -> None:
        INSERT_EVENTS.many(
            self.conn,
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

    def for_process(self, process_id: str, *, after: int = 0, limit: int = 100) -> list[EventRecord]:
        c = t.events.c
        rows = self.conn.execute(
            sa.select(c.id, c.process_id, c.type, c.actor, c.payload, c.created_at)
            .where(c.team_id == self.team_id, c.process_id == process_id, c.id > after)
            .order_by(c.id)
            .limit(limit)
        )
        return [EventRecord(**r._mapping) for r in rows]


FILE_EXISTS = Statement(sa.select(t.files.c.id).where(t.files.c.team_id == TEAM, t.files.c.id == ID))


class Files(Repository):
    def exists(self, file_id: str) -> bool:
        return self._first(FILE_EXISTS, b_id=file_id) is not None

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


_I = t.idempotency_keys.c
IDEMPOTENT_ANSWER = Statement(
    sa.select(_I.request_hash, _I.status_code, _I.response).where(
        _I.team_id == TEAM, _I.key == sa.bindparam("b_key")
    ),
    json_columns=[2],
)
INSERT_IDEMPOTENT_ANSWER = Statement(t.idempotency_keys.insert(), json_params=["response"])


class Idempotency(Repository):
    def get(self, key: str) -> tuple[str, int, Any] | None:
        row = self._first(IDEMPOTENT_ANSWER, b_key=key)
        return (row[0], row[1], row[2]) if row else None

    def put(self, key: str, *, request_hash: str, status_code: int, response: Any, now: int) -> None:
        row = {
            "team_id": self.team_id,
            "key": key,
            "request_hash": request_hash,
            "status_code": status_code,
            "response": response,
            "created_at": now,
        }
        INSERT_IDEMPOTENT_ANSWER.rows(self.conn, row)
