"""Records under ``/v1/ext/entity/{entityShortId}/record``: list and search (the process list's language and
paging), read and update by id or by the entity's primary key, and a record's processes."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from procession.api.deps import caller, services
from procession.api.envelope import DATA_ID, documented, link, reply
from procession.api.ext import EXT
from procession.api.schemas import ProcessOut, RecordOut
from procession.bootstrap import Services
from procession.services.commands import ListRecords, RecordProcesses, UpdateRecord
from procession.services.common import Caller
from procession.services.records import read_record, record_processes, search_records, update_record

RECORDS = "/entity/{entityShortId}/record"
RECORD = f"{RECORDS}/{{recordId}}"
BY_PK = f"{RECORDS}/{{keyShortId}}/{{keyValue}}"  # the entity's primary key and its value

router = APIRouter(prefix=EXT, tags=["external"])

_IDS = {"entityShortId": "$request.path.entityShortId", "recordId": DATA_ID}
RECORD_LINKS = {
    "read": link("get", EXT + RECORD, **_IDS),
    "update": link("put", EXT + RECORD, **_IDS),
    "processes": link("post", f"{EXT}{RECORD}/process/list", **_IDS),
}


@router.post(f"{RECORDS}/list", responses=documented(list[RecordOut]))
def search(
    entityShortId: str,
    body: ListRecords,
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
) -> Response:
    """List and search the entity's records: ``where`` on its attribute shortIds, ``id``, ``createdAt`` and
    ``updatedAt`` (the process list's operators, arrays, ``and``/``or``), ``skip``/``limit``, ``sort`` and
    ``cursor`` (``_meta.nextCursor``)."""
    page, meta = svc.run(search_records, who, entityShortId, body, cursor_key=svc.cursor_key)
    return reply(page, meta=meta)


@router.post(f"{RECORD}/process/list", responses=documented(list[ProcessOut]))
def processes(
    entityShortId: str,
    recordId: str,
    body: RecordProcesses,
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
) -> Response:
    """The processes created for the record, of every procedure of its entity (not deleted), the last
    updated first; page on with ``cursor`` = ``_meta.nextCursor``."""
    page, meta = svc.run(record_processes, who, entityShortId, (recordId,), body, cursor_key=svc.cursor_key)
    return reply(page, meta=meta)


def _by_id(recordId: str) -> tuple[str, ...]:
    return (recordId,)


def _by_pk(keyShortId: str, keyValue: str) -> tuple[str, ...]:
    return (keyShortId, keyValue)


# the same two routes twice: by record id, and by the entity's primary key
for path, find, suffix in ((RECORD, _by_id, ""), (BY_PK, _by_pk, "_by_pk")):

    @router.get(path, responses=documented(RecordOut, links=RECORD_LINKS), name=f"read_record{suffix}")
    def read(
        entityShortId: str,
        ref: tuple[str, ...] = Depends(find),
        who: Caller = Depends(caller),
        svc: Services = Depends(services),
    ) -> Response:
        """Read one record, by id or by primary key."""
        return reply(svc.run(read_record, who, entityShortId, ref))

    @router.put(
        path, responses=documented(RecordOut, 200, 409, links=RECORD_LINKS), name=f"update_record{suffix}"
    )
    async def update(
        entityShortId: str,
        body: UpdateRecord,
        ref: tuple[str, ...] = Depends(find),
        who: Caller = Depends(caller),
        svc: Services = Depends(services),
    ) -> Response:
        """Update one record: only the attributes sent change (null clears one); a primary-key value another
        record has is a 409."""
        return reply(await svc.write(update_record, who, entityShortId, ref, body))
