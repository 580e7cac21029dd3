"""Records: an entity's records listed and searched (the process list's language and paging), read and
updated by id or by primary key, and a record's processes."""

from __future__ import annotations

from typing import Any

from procession.domain.clock import now_ms
from procession.domain.errors import Conflict, Invalid, NotFound
from procession.domain.procedure import Entity
from procession.domain.query import RecordParser
from procession.services.commands import ListRecords, RecordProcesses, UpdateRecord
from procession.services.common import Caller
from procession.services.reads import paged
from procession.services.views import process_view
from procession.store.search import with_tiebreak
from procession.store.uow import Lookups, UnitOfWork, UnitsOfWork


def list_records(
    uows: UnitsOfWork, caller: Caller, entity_ref: str, *, after: str | None = None, limit: int = 25
) -> tuple[dict[str, Any], list[dict[str, Any]], str | None]:
    """(the entity, a page of its records with data by shortId, the id to page on from or None)."""
    with uows.read(caller.team_id) as uow:
        entity = uow.entities.get(entity_ref)
        if entity is None:
            raise NotFound(f"no entity {entity_ref!r}")
        rows = uow.records.page(entity.id, after=after, limit=limit + 1)
    page = [{**r, "data": entity.to_short(r["data"])} for r in rows[:limit]]
    return entity.to_dict(), page, page[-1]["id"] if len(rows) > limit else None


def get_record(uows: UnitsOfWork, caller: Caller, record_id: str) -> dict[str, Any]:
    """One record: its id, its entity (shortId) and its data by shortId."""
    with uows.read(caller.team_id) as uow:
        found = uow.records.get(record_id)
        entity = uow.entities.get(found["entity_id"]) if found else None
    if found is None or entity is None:
        raise NotFound(f"no record {record_id!r}")
    return {"id": found["id"], "entity": entity.to_dict(), "data": entity.to_short(found["data"])}


def load_entity(uow: UnitOfWork, ref: str) -> Entity:
    entity = uow.entities.get(ref)
    if entity is None:
        raise NotFound(f"no entity {ref!r}", field="entityShortId")
    return entity


def record_view(row: dict[str, Any], entity: Entity) -> dict[str, Any]:
    """A record as the external API shows it: its data by shortId."""
    return {
        "id": row["id"],
        "entity": row["entity_id"],
        "data": entity.to_short(row["data"]),
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
    }


def find_record(
    uow: UnitOfWork, entity: Entity, ref: tuple[str, ...], *, for_update: bool = False
) -> dict[str, Any]:
    """The record named by ``(id,)`` or ``(primary-key shortId, value)``; 404 when absent."""
    record_id: str | None = ref[0]
    if len(ref) == 2:
        pk = entity.primary_key_attribute
        if pk is None or ref[0] != pk.short_id:
            raise NotFound(f"{ref[0]!r} is not the primary key of {entity.short_id}")
        try:
            value = pk.normalise(ref[1], Lookups(uow))
        except ValueError:
            value = ref[1]
        found = uow.records.by_pk(entity.id, str(value))
        record_id = found[0] if found else None
    row = uow.records.get(record_id, for_update=for_update) if record_id else None
    if row is None or row["entity_id"] != entity.id:
        raise NotFound(f"no {entity.short_id} record {'/'.join(ref)!r}")
    return row


def search_records(
    uows: UnitsOfWork, caller: Caller, entity_ref: str, cmd: ListRecords, *, cursor_key: bytes
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One page of the entity's records: ``where`` on their attributes (and ``id``, ``createdAt``,
    ``updatedAt``), sorted, from ``cursor`` then ``skip``: the process list's language and paging."""
    with uows.read(caller.team_id) as uow:
        entity = load_entity(uow, entity_ref)
        parser = RecordParser(entity, Lookups(uow))
        where = parser.where(cmd.where)
        keys = with_tiebreak(parser.sort(cmd.sort), table="records")
        page, meta = paged(
            cmd,
            keys,
            ("records", entity.id, where),
            cursor_key,
            lambda after: uow.records.search(
                entity.id, where=where, keys=keys, after=after, skip=cmd.skip, limit=cmd.limit
            ),
        )
    return [record_view(r, entity) for r in page], meta


def read_record(uows: UnitsOfWork, caller: Caller, entity_ref: str, ref: tuple[str, ...]) -> dict[str, Any]:
    with uows.read(caller.team_id) as uow:
        entity = load_entity(uow, entity_ref)
        return record_view(find_record(uow, entity, ref), entity)


def update_record(
    uows: UnitsOfWork, caller: Caller, entity_ref: str, ref: tuple[str, ...], cmd: UpdateRecord
) -> dict[str, Any]:
    """Change the attributes sent (null clears one), on the current row (locked); a new primary-key value
    another record has is a 409."""
    with uows.write(caller.team_id) as uow:
        now = now_ms()
        entity = load_entity(uow, entity_ref)
        row = find_record(uow, entity, ref, for_update=True)
        changes = entity.normalise_data(cmd.data, Lookups(uow))
        data = {k: v for k, v in {**row["data"], **changes}.items() if v is not None}
        missing = entity.missing_required(data)
        if missing:
            raise Invalid(missing)
        pk_value = entity.key_of(data)
        if pk_value is not None and pk_value != row["pk_value"]:
            other = uow.records.by_pk(entity.id, pk_value)
            if other is not None:
                key = entity.primary_key_attribute.short_id  # type: ignore[union-attr]
                raise Conflict(
                    f"a {entity.short_id} record with {key} {pk_value!r} exists",
                    field=f"data.{key}",
                    code="duplicate_primary_key",
                )
        if data != row["data"] or pk_value != row["pk_value"]:
            uow.records.rewrite(row["id"], data, pk_value, now)
            row = {**row, "data": data, "pk_value": pk_value, "updated_at": now}
        uow.commit()
    return record_view(row, entity)


def record_processes(
    uows: UnitsOfWork,
    caller: Caller,
    entity_ref: str,
    ref: tuple[str, ...],
    cmd: RecordProcesses,
    *,
    cursor_key: bytes,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The processes (not deleted) created for the record, of every procedure, the last updated first."""
    with uows.read(caller.team_id) as uow:
        entity = load_entity(uow, entity_ref)
        row = find_record(uow, entity, ref)
        procedures = {p.id: p for p in uow.procedures.list() if p.entity == entity.id}
        keys = with_tiebreak([])
        page, meta = paged(
            cmd,
            keys,
            ("record processes", row["id"]),
            cursor_key,
            lambda after: uow.processes.of_record(
                list(procedures), row["id"], keys=keys, after=after, skip=cmd.skip, limit=cmd.limit
            ),
        )
    return [process_view(p, procedures[p.procedure]) for p in page], meta
