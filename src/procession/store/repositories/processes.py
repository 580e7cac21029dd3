"""Processes and their events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from procession.domain.errors import Conflict
from procession.domain.events import EventRecord
from procession.domain.procedure import Procedure
from procession.domain.process import Event, Process
from procession.domain.query import Both, SortKey
from procession.store import tables as t
from procession.store import words
from procession.store.batch import Write, insert_events, run, update_processes
from procession.store.outbox import Outbox
from procession.store.repositories.base import ID, TEAM, Repository
from procession.store.search import clause, search_statement
from procession.store.statement import Statement, driver_result, driver_rows

_PROCESS_COLUMNS = t.PROCESS_COLUMNS
_COLUMN_LIST = ", ".join(_PROCESS_COLUMNS.values())  # in the order of Process's fields
_JSON_NAMES = ("data", "derived_data")
_JSON_AT = [list(_PROCESS_COLUMNS).index(name) for name in _JSON_NAMES]
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


def duplicate_key(procedure: Procedure, pk_value: str) -> Conflict:
    key = procedure.primary_key_attribute.short_id  # type: ignore[union-attr]
    return Conflict(
        f"a {procedure.short_id} with {key} {pk_value!r} exists",
        field=f"data.{key}",
        code="duplicate_primary_key",
    )


def _violates(error: IntegrityError, index: str, columns: str) -> bool:
    """Whether ``error`` is a violation of the unique index ``index`` (PostgreSQL names it; SQLite names
    its ``columns``)."""
    diag = getattr(error.orig, "diag", None)
    if diag is not None:
        return bool(diag.constraint_name == index)
    return str(error.orig) == f"UNIQUE constraint failed: {columns}"


class Stale(Exception):
    """A process changed after it was read: what was worked out on it must not be written."""


@dataclass
class Saved:
    """Processes of one procedure changed by a batch of work, with their writes built (``Processes.prepare``):
    written by ``Processes.save_many``, each only if still at the version it was read at."""

    procedure: Procedure
    processes: dict[str, Process]  # as they will be written
    events: list[tuple[str, Event]]  # (process id, event), in order
    writes: list[Write]
    count: int  # processes the writes must change
    event_writes: list[Write]
    actor: str | None
    now: int


class Processes(Repository):
    """A team's processes. ``save`` and ``save_many`` are the only writers of process rows: each hands the
    events of what it saved to the unit of work's ``Outbox``, which writes them at commit."""

    def __init__(self, conn: sa.Connection, team_id: str, outbox: Outbox) -> None:
        super().__init__(conn, team_id)
        self.outbox = outbox

    def rekey(self, procedure: Procedure) -> None:
        self._rekey(t.processes, t.processes.c.procedure_id, procedure)

    def save(self, procedure: Procedure, process: Process, events: list[Event], *, actor: str | None) -> None:
        """Write one process that ``Process.create`` made (its first event ``process.created``) or that
        ``Process.apply`` changed, and hand its events over; ``Conflict`` when its primary-key value is
        another process's (nothing written; on PostgreSQL the transaction can only roll back)."""
        if not events:
            return
        pk_value = procedure.key_of(process.data)
        try:
            if events[0].type == "process.created":
                row = {col: getattr(process, name) for name, col in _INSERTED}
                row["team_id"], row["pk_value"] = self.team_id, pk_value
                INSERT_PROCESS.rows(self.conn, row)
            else:
                changes = events[0].payload["changes"]  # process.updated's
                run(self.conn, update_processes(self.conn, procedure, [process], changes))
        except IntegrityError as e:
            if pk_value is not None and _violates(
                e, "ux_processes_pk", "processes.procedure_id, processes.pk_value"
            ):
                raise duplicate_key(procedure, pk_value) from None
            raise
        self.outbox.add(
            procedure,
            {process.id: process},
            [(process.id, e) for e in events],
            actor=actor,
            now=process.updated_at,
        )

    def prepare(
        self,
        procedure: Procedure,
        read: list[tuple[Process, int]],
        events: list[tuple[str, Event]],
        *,
        actor: str | None,
        now: int,
    ) -> Saved:
        """The writes of processes of ``procedure`` that a batch of work changed (each with the version it
        was read at) and of their ``events``, built ahead on any connection of the database, for
        ``save_many``."""
        columns: set[str] = set()
        for _, event in events:
            if event.type == "process.updated":
                columns.update(event.payload["changes"])
        processes = [p for p, _ in read]
        versions = {p.id: version for p, version in read}
        writes = update_processes(self.conn, procedure, processes, columns, versions)
        appends = insert_events(self.conn, self.team_id, events, actor=actor, now=now)
        return Saved(
            procedure, {p.id: p for p in processes}, events, writes, len(processes), appends, actor, now
        )

    def save_many(self, saved: Saved) -> None:
        """Write what ``prepare`` built and hand its events over; ``Stale`` if a process is no longer at the
        version it was read at (some rows may be written: roll back)."""
        if run(self.conn, saved.writes) != saved.count:
            raise Stale(f"{saved.count} processes to write, some changed since they were read")
        self.outbox.add(
            saved.procedure,
            saved.processes,
            saved.events,
            actor=saved.actor,
            now=saved.now,
            writes=saved.event_writes,
        )

    def exists(self, process_id: str, procedure_id: str | None = None) -> bool:
        if procedure_id:
            found = self._first(PROCESS_OF_PROCEDURE_EXISTS, b_id=process_id, b_procedure=procedure_id)
        else:
            found = self._first(PROCESS_EXISTS, b_id=process_id)
        return found is not None

    def id_by_pk(self, procedure_id: str, pk_value: str) -> str | None:
        return self._scalar(PROCESS_ID_BY_PK, b_procedure=procedure_id, b_pk=pk_value)

    def _select(self, *, json_text: bool = False) -> Any:
        """The columns of ``Process``, in its order, of this team's processes; ``json_text``: JSON columns as
        their text (SQLite's as stored, PostgreSQL's as it prints them), for the caller to decode."""
        c = t.processes.c
        columns = [c[col].label(name) for name, col in _PROCESS_COLUMNS.items()]
        if json_text and self.conn.dialect.name == "postgresql":
            columns = [sa.cast(x, sa.Text).label(x.name) if x.name in _JSON_NAMES else x for x in columns]
        return sa.select(*columns).where(c.team_id == self.team_id)

    def get(self, process_id: str, *, for_update: bool = False) -> Process | None:
        """The process with this id; ``for_update`` locks the row until commit (PostgreSQL; SQLite's writer
        lock already serialises writers)."""
        stmt = self._select().where(t.processes.c.id == process_id)
        if for_update:
            stmt = stmt.with_for_update()
        row = self.conn.execute(stmt).first()
        return Process(*row) if row else None

    def get_all(self, ids: list[str]) -> dict[str, Process]:
        """The processes with these ids (of any procedure), by id."""
        rows: Any = self.conn.execute(self._select().where(t.processes.c.id.in_(ids))) if ids else []
        out = {}
        for row in rows:
            process = out[row[0]] = Process(*row)
            process.is_deleted = bool(process.is_deleted)
        return out

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
        key_prefix: str | None = None,
        q: str | None = None,
    ) -> list[tuple[Process, list[Any]]]:
        """One page of processes (``limit`` + 1 rows, to tell whether there are more) with their sort values;
        ``q``: only those whose words or whose record's hold its words (``words.matching``); ``key_prefix``:
        only those whose primary-key value starts with it (a range of the key's index, then
        the prefix itself, as the database's collation may order more than the prefix in that range)."""
        stmt = self._search(
            procedure_id, where, keys, after, skip, limit, include_deleted, key_prefix, q, False
        )
        width = len(_PROCESS_COLUMNS)
        return [(Process(*row[:width]), list(row[width:])) for row in self.conn.execute(stmt)]

    def search_rows(
        self,
        procedure_id: str,
        *,
        where: Any,
        keys: list[SortKey],
        after: list[Any] | None,
        limit: int,
        include_deleted: bool,
    ) -> list[tuple[Any, ...]]:
        """The page ``search`` reads, as the driver's rows: the columns of ``Process`` in its order, then the
        sort values; ``data`` and ``derived_data`` as JSON text (the driver's decoding of PostgreSQL's costs
        more than the caller's), ``is_deleted`` 0 or 1 on SQLite. For reads of every process, where building
        each costs more than reading it."""
        stmt = self._search(procedure_id, where, keys, after, 0, limit, include_deleted, None, None, True)
        return driver_result(self.conn, stmt)

    def _search(
        self,
        procedure_id: str,
        where: Any,
        keys: list[SortKey],
        after: list[Any] | None,
        skip: int,
        limit: int,
        include_deleted: bool,
        key_prefix: str | None,
        q: str | None,
        json_text: bool,
    ) -> Any:
        c = t.processes.c
        base = self._select(json_text=json_text).where(c.procedure_id == procedure_id)
        if not include_deleted:
            base = base.where(c.is_deleted.is_(False))
        if key_prefix is not None:
            base = base.where(
                c.pk_value >= key_prefix,
                c.pk_value < key_prefix + "\U0010ffff",
                sa.func.substr(c.pk_value, 1, len(key_prefix)) == key_prefix,
            )
        if q is not None:
            reach = words.reach(self.conn, q, self.team_id, procedure_id)
            if reach == words.FEW and self.conn.dialect.name == "postgresql":
                # few rows: a parallel worker would take longer to start than they take to read
                Statement.on_driver(
                    self.conn, "SET LOCAL max_parallel_workers_per_gather = 0", (), many=False
                )
            base = base.where(
                words.matching(self.conn.dialect.name, q, self.team_id, procedure_id, reach=reach)
            )
        return search_statement(base, where, keys, after, skip, limit)

    def of_record(
        self,
        procedure_ids: list[str],
        record_id: str,
        *,
        keys: list[SortKey],
        after: list[Any] | None,
        skip: int,
        limit: int,
    ) -> list[tuple[Process, list[Any]]]:
        """One page of a record's processes (not deleted) of these procedures (on the index of each's processes
        by record), as ``search`` pages them."""
        c = t.processes.c
        base = self._select().where(
            c.procedure_id.in_(procedure_ids), c.record_id == record_id, c.is_deleted.is_(False)
        )
        stmt = search_statement(base, Both(()), keys, after, skip, limit)
        width = len(_PROCESS_COLUMNS)
        return [(Process(*row[:width]), list(row[width:])) for row in self.conn.execute(stmt)]

    def count(self, procedure_id: str, *, where: Any, cap: int) -> int:
        """How many processes (not deleted) ``where`` finds, counted up to ``cap`` + 1 at most."""
        c = t.processes.c
        found = (
            sa.select(sa.literal(1))
            .where(c.team_id == self.team_id, c.procedure_id == procedure_id, c.is_deleted.is_(False))
            .where(clause(where))
            .limit(cap + 1)
            .subquery()
        )
        return int(self.conn.scalar(sa.select(sa.func.count()).select_from(found)) or 0)


class Events(Repository):
    def for_process(self, process_id: str, *, after: int = 0, limit: int = 100) -> list[EventRecord]:
        c = t.events.c
        rows = self.conn.execute(
            sa.select(c.id, c.process_id, c.type, c.actor, c.payload, c.created_at)
            .where(c.team_id == self.team_id, c.process_id == process_id, c.id > after)
            .order_by(c.id)
            .limit(limit)
        )
        return [EventRecord(**r._mapping) for r in rows]

    def record(self, process_id: str, type: str, payload: dict[str, Any], *, now: int) -> None:
        """An event that comes with no change of the process itself (a link made elsewhere): written now,
        in this transaction, with no follow-ups (it triggers nothing)."""
        self.conn.execute(
            t.events.insert().values(
                team_id=self.team_id, process_id=process_id, type=type, actor=None, payload=payload,
                created_at=now,
            )
        )  # fmt: skip
