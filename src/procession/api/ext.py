"""The external API, ``/v1/ext``: shortIds in and out."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Header, Path, Query, UploadFile
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import WithJsonSchema
from starlette.convertors import Convertor, register_url_convertor

from procession.api.deps import bound, caller, services
from procession.api.envelope import DATA_ID, documented, link, reply
from procession.api.schemas import ConfigOut, EventOut, FileOut, ProcessOut, RequirementsOut
from procession.bootstrap import Services
from procession.domain.errors import Invalid
from procession.services.commands import CreateProcess, ExportProcesses, ListProcesses, UpdateProcess
from procession.services.common import Caller
from procession.services.configuration import team_config
from procession.services.exports import MEDIA_TYPES, export_processes
from procession.services.files import get_file, store_file
from procession.services.processes import create_process, delete_process, update_process
from procession.services.reads import get_process, list_processes, process_history, process_requirements

EXT = "/v1/ext"
PROCESSES = "/procedure/{procedureShortId}/process"
PROCESS = f"{PROCESSES}/{{processId}}"


class ShortId(Convertor[str]):
    """A path segment that is a shortId (a letter, then letters, digits and ``_``): never a process id, a
    UUID, whose hyphens no shortId has."""

    regex = "[A-Za-z][A-Za-z0-9_]{0,99}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("shortId", ShortId())
# by primary key: the key's shortId, then its value, which is the rest of the path, slashes (sent as they are
# or as %2F) included; so ``…/process/lead_id/events`` is the lead whose key is "events", and
# ``…/process/{id}/events`` (an id is no shortId) the history of a process
BY_PK = f"{PROCESSES}/{{pkShortId:shortId}}/{{pkValue:path}}"

router = APIRouter(prefix=EXT, tags=["external"])
# a header is text or absent, never null: each is documented as a string (FastAPI says "string or null")
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="a replay with the same key returns the first answer; the same key with another body is a 409",
    ),
    WithJsonSchema({"type": "string", "maxLength": 200}),
]

# ``If-Match`` is a process version, as an entity tag (``"3"``, ``W/"3"``) or bare (``3``): the pattern
# documented is the one checked (``_version``)
VERSION_TAG = r'^(W/)?("[0-9]{1,18}"|[0-9]{1,18})$'
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description='the version read (`3` or `"3"`); 409 if it changed',
    ),
    WithJsonSchema({"type": "string", "pattern": VERSION_TAG}),
]


# from a reply holding a process to the calls on it (its procedure: the reply's, by id)
_IDS = {"procedureShortId": "$response.body#/_data/procedure", "processId": DATA_ID}
_VERSION = {"header.If-Match": '"{$response.body#/_data/version}"'}  # an entity tag: a header is text
PROCESS_LINKS = {
    "read": link("get", EXT + PROCESS, **_IDS),
    "update": link("put", EXT + PROCESS, **_IDS, **_VERSION),
    "delete": link("delete", EXT + PROCESS, **_IDS),
    "history": link("get", f"{EXT}{PROCESS}/events", **_IDS),
    "requirements": link("get", f"{EXT}{PROCESS}/requirements", **_IDS),
    "links": link("get", f"{EXT}{PROCESS}/links", **_IDS),
    "readInternal": link("get", "/v1/internal/process/{processId}", processId=DATA_ID),
}
# from a deleted process to its restoring: an update of ``isDeleted: false``
RESTORE_LINKS = {"restore": PROCESS_LINKS["update"] | {"requestBody": {"isDeleted": False}}}


@router.post(PROCESSES, status_code=201, responses=documented(ProcessOut, 201, 409, links=PROCESS_LINKS))
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


@router.post(f"{PROCESSES}/list", responses=documented(list[ProcessOut]))
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


EXPORTED = {
    200: {
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
        "description": "Every process found, streamed: CSV (a header row, then one row per process) or NDJSON "
        "(one process a line, as the list shows it)",
    },
    **{k: v for k, v in documented(None).items() if k != 200},
}
# what ``Accept`` may name, by format (a range: ``*/*`` and ``text/*`` are CSV, ``application/*`` NDJSON)
ACCEPTED = {
    "text/csv": "csv",
    "text/*": "csv",
    "*/*": "csv",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "application/*": "ndjson",
}


def _format(asked: str | None, accept: str | None) -> str:
    """The body's ``format``; else the first of the ``Accept`` header's types (by ``q``) that names one; CSV
    when neither says."""
    if asked is not None:
        return asked
    ranges = []
    for i, part in enumerate((accept or "").split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        q = next((p[2:] for p in params if p.replace(" ", "").startswith("q=")), "1")
        try:
            weight = float(q)
        except ValueError:
            weight = 0.0
        if media.lower() in ACCEPTED and weight > 0:
            ranges.append((-weight, i, ACCEPTED[media.lower()]))
    return min(ranges)[2] if ranges else "csv"


@router.post(f"{PROCESSES}/export", response_class=StreamingResponse, responses=EXPORTED)
def export(
    procedureShortId: str,
    body: ExportProcesses,
    accept: Annotated[str | None, Header(), WithJsonSchema({"type": "string"})] = None,
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
) -> Response:
    """Every process a ``where`` finds (as the list's, with ``sort`` and ``includeDeleted``; no paging), streamed
    as CSV or NDJSON: the body's ``format``, else the ``Accept`` header's (``text/csv``,
    ``application/x-ndjson``), else CSV. CSV columns: the process's fields (``id`` … ``version``), then
    ``data.<shortId>`` per attribute and ``derivedData.<shortId>`` per derived one; booleans as ``true`` and
    ``false``, lists and objects as JSON, null as an empty cell."""
    fmt = _format(body.format, accept)
    chunks = svc.run(export_processes, who, procedureShortId, body, fmt)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", procedureShortId)
    return StreamingResponse(
        chunks,
        media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'},
    )


def _version(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    if not re.fullmatch(VERSION_TAG, if_match.strip()):
        raise Invalid.one("invalid_header", "If-Match must be the process version", "If-Match")
    return int(if_match.strip().removeprefix("W/").strip('"'))


def _by_id(processId: str) -> tuple[str, ...]:
    return (processId,)


def _by_pk(pkShortId: str, pkValue: str) -> tuple[str, ...]:
    return (pkShortId, pkValue)


# the same three routes twice: by the procedure's primary key, and by process id; by primary key first, and
# before any ``…/process/{processId}/…`` route (``app.create_app`` includes this router first)
for path, find, suffix in ((BY_PK, _by_pk, "_by_pk"), (PROCESS, _by_id, "")):

    @router.get(path, responses=documented(ProcessOut, links=PROCESS_LINKS), name=f"read{suffix}")
    def read(
        procedureShortId: str,
        ref: tuple[str, ...] = Depends(find),
        who: Caller = Depends(caller),
        svc: Services = Depends(services),
    ) -> Response:
        """Read one process, by id or by primary key."""
        return reply(svc.run(get_process, who, procedureShortId, ref))

    @router.put(path, responses=documented(ProcessOut, 200, 409, links=PROCESS_LINKS), name=f"update{suffix}")
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

    @router.delete(path, responses=documented(ProcessOut, links=RESTORE_LINKS), name=f"delete{suffix}")
    async def delete(
        procedureShortId: str,
        ref: tuple[str, ...] = Depends(find),
        who: Caller = Depends(caller),
        svc: Services = Depends(services),
    ) -> Response:
        """Delete one process (soft: ``isDeleted``; an update of ``isDeleted: false`` restores it)."""
        return reply(await svc.write(delete_process, who, procedureShortId, ref))


@router.get(f"{PROCESS}/events", responses=documented(list[EventOut]))
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


@router.get(f"{PROCESS}/requirements", responses=documented(RequirementsOut))
def requirements(
    procedureShortId: str,
    processId: str,
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
) -> Response:
    """Which requirements the process meets now (``met``, with the fields each ``reads``), and which gates
    would refuse a move to each state (``blockedStates``) or status (``blockedStatuses``)."""
    return reply(svc.run(process_requirements, who, procedureShortId, (processId,)))


@router.get("/config", responses=documented(ConfigOut))
def config(who: Caller = Depends(caller), svc: Services = Depends(services)) -> Response:
    """The team's procedures, entities, attribute types, attributes, derived attributes, pods, users and roles."""
    return reply(svc.run(team_config, who.team_id))


# a media type as RFC 9110 has it (``type/subtype``, parameters): what a download's Content-Type is
TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
MEDIA_TYPE = rf'{TOKEN}/{TOKEN}([ \t]*;[ \t]*{TOKEN}=({TOKEN}|"[\t !#-\[\]-~]*"))*'
# a form's field is text or absent, never null (FastAPI would document "string or null"); an empty one is
# an absent one
FILE_TYPE = {"type": "string", "maxLength": 100, "pattern": f"^({MEDIA_TYPE})?$"}
FileType = Annotated[
    str | None,
    Form(
        max_length=100,
        pattern=FILE_TYPE["pattern"],
        description="its media type (`image/jpeg`); when absent or empty, the part's",
    ),
    WithJsonSchema(FILE_TYPE),
]
FileName = Annotated[
    str | None, Form(description="its name; the part's by default"), WithJsonSchema({"type": "string"})
]


# the file part: a binary string, as OpenAPI 3.0 says it (``format: binary``: what client generators read as a
# file to upload) and as 3.1 does (``contentMediaType``); FastAPI gives only the latter
Photo = Annotated[
    UploadFile,
    File(description="the file"),
    WithJsonSchema({"type": "string", "format": "binary", "contentMediaType": "application/octet-stream"}),
]


def _media_type(value: str | None) -> str:
    """``value`` if it is a media type, else ``application/octet-stream``."""
    return value if value is not None and re.fullmatch(MEDIA_TYPE, value) else "application/octet-stream"


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
        filetype=filetype or _media_type(photo.content_type),
        client_id=client_id,
    )
    return reply(stored, status=201)


PHOTO = "/photo/{fileId}"
FILE_LINKS = {"download": link("get", EXT + PHOTO, fileId=DATA_ID)}
# the id a client chooses for its upload (``store_file`` checks it); the same path as the download's
ClientId = Annotated[
    str, Path(description="a UUID chosen by the client", json_schema_extra={"format": "uuid"})
]


@router.post("/photo", status_code=201, responses=documented(FileOut, 201, 409, links=FILE_LINKS))
def upload_photo(
    photo: Photo,
    filename: FileName = None,
    filetype: FileType = None,
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
) -> Response:
    """Upload a photo or document; the reply's ``id`` goes into photo and document attributes."""
    return _upload(svc, who, photo, filename, filetype, None)


@router.post(PHOTO, status_code=201, responses=documented(FileOut, 201, 409, links=FILE_LINKS))
def upload_photo_with_id(
    fileId: ClientId,
    photo: Photo,
    filename: FileName = None,
    filetype: FileType = None,
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
) -> Response:
    """Upload with an id chosen by the client (a UUID): the spec's ``/photo/{clientUUID}``, named as the
    download's path, which is the same path."""
    return _upload(svc, who, photo, filename, filetype, fileId)


@router.get(
    PHOTO,
    response_class=FileResponse,
    responses={
        200: {
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
            "description": "The file, as the media type it was uploaded with",
        },
        **{k: v for k, v in documented(None).items() if k != 200},
    },
)
def download_photo(fileId: str, who: Caller = Depends(caller), svc: Services = Depends(services)) -> Response:
    """Download an uploaded file."""
    meta, path = svc.run(get_file, who.team_id, svc.settings.files_dir, fileId)
    # one stored before media types were checked is sent as bytes: a header cannot carry any text
    return FileResponse(path, media_type=_media_type(meta["filetype"]), filename=meta["filename"])
