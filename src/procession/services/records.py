"""Record reads: an entity's records a page at a time, and one record with its data by shortId."""

from __future__ import annotations

from typing import Any

from procession.domain.errors import NotFound
from procession.services.common import Caller
from procession.store.uow import UnitsOfWork


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
