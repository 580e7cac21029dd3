"""Records: an entity's records a page at a time, one record with its data by shortId, and a change of a
record's data."""

from __future__ import annotations

from typing import Any

from procession.domain.clock import now_ms
from procession.domain.errors import Conflict, FieldError, Invalid, NotFound
from procession.services.common import Caller
from procession.store.uow import Lookups, UnitsOfWork


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


def update_record(uows: UnitsOfWork, caller: Caller, record_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """Change the values sent (by shortId; null clears one), each checked by its entity's attribute type; the
    required ones stay set and the primary key stays the record's own. The record as ``get_record`` reads it."""
    with uows.write(caller.team_id) as uow:
        found = uow.records.get(record_id)
        entity = uow.entities.get(found["entity_id"]) if found else None
        if found is None or entity is None:
            raise NotFound(f"no record {record_id!r}")
        merged = {**found["data"], **entity.normalise_data(data, Lookups(uow), prefix="data")}
        merged = {k: v for k, v in merged.items() if v is not None}
        key, pk = entity.key_of(merged), entity.primary_key_attribute
        missing = entity.missing_required(merged)
        if pk is not None and key is None and not pk.required:
            missing.append(
                FieldError("required", f"{pk.short_id} (the primary key) is required", f"data.{pk.short_id}")
            )
        if missing:
            raise Invalid(missing)
        holder = uow.records.by_pk(entity.id, key) if key is not None else None
        if holder is not None and holder[0] != record_id:
            field = f"data.{pk.short_id}" if pk else None
            raise Conflict(f"another {entity.short_id} record has the key {key!r}", field=field)
        uow.records.update(record_id, data=merged, pk_value=key, now=now_ms())
        uow.commit()
    return {"id": record_id, "entity": entity.to_dict(), "data": entity.to_short(merged)}
