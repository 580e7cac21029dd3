"""The external API, ``/v1/ext``: shortIds in and out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Header, Query, UploadFile
from fastapi.responses import FileResponse, Response

from procession.api.deps import bound, caller, services
from procession.api.envelope import documented, reply
from procession.api.schemas import ConfigOut, EventOut, FileOut, ProcessOut
from procession.bootstrap import Services
from procession.domain.errors import Invalid
from procession.services.commands import CreateProcess, ListProcesses, UpdateProcess
from procession.services.common import Caller
from procession.services.configuration import team_config
from procession.services.files import get_file, store_file
from procession.services.processes import create_process, delete_process, update_process
from procession.services.reads import get_process, list_processes, process_history

router = APIRouter(prefix="/v1/ext", tags=["external"])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]


@router.post(
    "/procedure/{procedureShortId}/process", status_code=201, responses=documented(ProcessOut, 201, 409)
)
async def create(
    procedureShortId: str,
    body: CreateProcess,
    idempotency_key: IdempotencyKey = None,
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
) -> Response:
    """Create a process of the procedure. A replay with the same ``Idempotency-Key`` returns the first answer."""
    once = bound(idempotency_key, f"create {procedureShortId}", body)
    status, data = await svc.write(create_process, who, procedureShortId, body, once=once)
    return reply(data, status=status)


@router.post("/procedure/{procedureShortId}/process/list", responses=documented(list[ProcessOut]))
def search(
    procedureShortId: str,
    body: ListProcesses,
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
) -> Response:
    """List and search: ``where`` (operators ``= != > >= < <=``, arrays for "one of", ``and``/``or``),
    ``skip``/``limit`` (default 10, at most 100), ``sort``, and ``cursor`` (``_meta.nextCursor``) for deep paging."""
    page, meta = svc.run(list_processes, who, procedureShortId, body, cursor_key=svc.cursor_key)
    return reply(page, meta=meta)


@router.get("/procedure/{procedureShortId}/process/{processId}/events", responses=documented(list[EventOut]))
def history(
    procedureShortId: str,
    processId: str,
    after: Annotated[int, Query(ge=0, lt=2**63)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
) -> Response:
    """The process's events in commit order; page on with ``after`` = ``_meta.nextAfter``."""
    events, meta = svc.run(process_history, who, procedureShortId, (processId,), after=after, limit=limit)
    return reply(events, meta=meta)


def _version(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    value = if_match.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise Invalid.one("invalid_header", "If-Match must be the process version", "If-Match")
    return int(value)


IfMatch = Annotated[str | None, Header(alias="If-Match", description="the version read; 409 if it changed")]


def _by_id(processId: str) -> tuple[str, ...]:
    return (processId,)


def _by_pk(pkShortId: str, pkValue: str) -> tuple[str, ...]:
    return (pkShortId, pkValue)


# the same three routes twice: by process id, and by the procedure's primary key
for path, find, suffix in (
    ("/procedure/{procedureShortId}/process/{processId}", _by_id, ""),
    ("/procedure/{procedureShortId}/process/{pkShortId}/{pkValue}", _by_pk, "_by_pk"),
):

    @router.get(path, responses=documented(ProcessOut), name=f"read{suffix}")
    def read(
        procedureShortId: str,
        ref: tuple[str, ...] = Depends(find),
        who: Caller = Depends(caller),
        svc: Services = Depends(services),
    ) -> Response:
        """Read one process, by id or by primary key."""
        return reply(svc.run(get_process, who, procedureShortId, ref))

    @router.put(path, responses=documented(ProcessOut, 200, 409), name=f"update{suffix}")
    async def update(
        procedureShortId: str,
        body: UpdateProcess,
        ref: tuple[str, ...] = Depends(find),
        if_match: IfMatch = None,
        who: Caller = Depends(caller),
        svc: Services = Depends(services),
    ) -> Response:
        """Update one process: only the fields sent change; ``state`` must follow the state graph."""
        version = _version(if_match)
        return reply(
            await svc.write(update_process, who, procedureShortId, ref, body, expected_version=version)
        )

    @router.delete(path, responses=documented(ProcessOut), name=f"delete{suffix}")
    async def delete(
        procedureShortId: str,
        ref: tuple[str, ...] = Depends(find),
        who: Caller = Depends(caller),
        svc: Services = Depends(services),
    ) -> Response:
        """Delete one process (soft: ``isDeleted``; an update of ``isDeleted: false`` restores it)."""
        return reply(await svc.write(delete_process, who, procedureShortId, ref))


@router.get("/config", responses=documented(ConfigOut))
def config(who: Caller = Depends(caller), svc: Services = Depends(services)) -> Response:
    """The team's procedures, entities, attribute types, attributes, derived attributes, pods, users and roles."""
    return reply(svc.run(team_config, who.team_id))


def _upload(
    svc: Services,
    who: Caller,
    photo: UploadFile,
    filename: str | None,
    filetype: str | None,
    client_id: str | None,
) -> Response:
    content = photo.file.read()
    stored = svc.run(
        store_file,
        who.team_id,
        svc.settings.files_dir,
        content=content,
        filename=filename or photo.filename or "upload",
        filetype=filetype or photo.content_type or "application/octet-stream",
        client_id=client_id,
    )
    return reply(stored, status=201)


@router.post("/photo", status_code=201, responses=documented(FileOut, 201, 409))
def upload_photo(
    photo: Annotated[UploadFile, File()],
    filename: Annotated[str | None, Form()] = None,
    filetype: Annotated[str | None, Form()] = None,
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
) -> Response:
    """Upload a photo or document; the reply's ``id`` goes into photo and document attributes."""
    return _upload(svc, who, photo, filename, filetype, None)


@router.post("/photo/{clientUUID}", status_code=201, responses=documented(FileOut, 201, 409))
def upload_photo_with_id(
    clientUUID: str,
    photo: Annotated[UploadFile, File()],
    filename: Annotated[str | None, Form()] = None,
    filetype: Annotated[str | None, Form()] = None,
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
) -> Response:
    """Upload with an id chosen by the client (a UUID)."""
    return _upload(svc, who, photo, filename, filetype, clientUUID)


@router.get(
    "/photo/{fileId}",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The file"},
        **{k: v for k, v in documented(None).items() if k != 200},
    },
)
def download_photo(fileId: str, who: Caller = Depends(caller), svc: Services = Depends(services)) -> Response:
    """Download an uploaded file."""
    meta, path = svc.run(get_file, who.team_id, svc.settings.files_dir, fileId)
    return FileResponse(path, media_type=meta["filetype"], filename=meta["filename"])
