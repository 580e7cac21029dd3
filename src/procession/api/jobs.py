"""Bulk update / bulk create (asynchronous: 202 with the job) and the background-job API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import msgspec
import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from procession.api.deps import bound, caller, services
from procession.api.envelope import DATA_ID, documented, link, reply
from procession.api.ext import EXT, PROCESSES, IdempotencyKey
from procession.bootstrap import Services
from procession.domain.errors import BadRequest, Invalid
from procession.domain.text import check_encodable
from procession.services import jobs as job_service
from procession.services.commands import BulkProcesses
from procession.services.common import Caller
from procession.services.idempotency import Once

router = APIRouter(prefix=EXT, tags=["jobs"])
JobOut = dict[str, Any]
JOB = "/background-job/{jobId}"
# from a reply holding a job to following it
JOB_LINKS = {
    "job": link("get", EXT + JOB, jobId=DATA_ID),
    "entries": link("get", f"{EXT}{JOB}/entries", jobId=DATA_ID),
    "abort": link("post", f"{EXT}{JOB}/abort", jobId=DATA_ID),
}


# the body is read as bytes and its items parsed one at a time, as they are stored (see ``_items``), so
# FastAPI does not parse it: the document still describes it
BULK_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": BulkProcesses.model_json_schema()}},
    }
}


MAX_DEPTH = 64  # nesting of a bulk body: deeper bodies are refused (storing them would fail further on)


class _Body(msgspec.Struct):
    processes: list[msgspec.Raw]


_BODY = msgspec.json.Decoder(_Body)


def _split(body: bytes) -> list[msgspec.Raw]:
    """The items of ``{"processes": [...]}``, each left as its JSON text: one pass over the whole body, before
    any database work, that refuses one that is not JSON, too deep or has no ``processes`` list, and builds
    one small view per item (the server holds the body's bytes and a batch of items as objects, not all of
    them). Keys other than ``processes`` are ignored."""
    try:
        return _BODY.decode(body).processes
    except RecursionError:
        raise BadRequest(f"the body nests deeper than {MAX_DEPTH} levels", code="too_deep") from None
    except msgspec.ValidationError as e:
        raise Invalid.one("invalid", f'send {{"processes": [...]}}: {e}', "processes") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as e:
        _unencodable(body)  # a lone surrogate (msgspec says "truncated"): refused as in every route
        raise BadRequest(f"the body is not valid JSON: {e}", code="malformed_json") from None


def _unencodable(body: bytes, path: str = "") -> None:
    """``Invalid`` naming where ``body``, which msgspec refused, holds a lone surrogate, if that is why:
    read again by Python's decoder, which keeps them (slower, and only for a body already refused)."""
    try:
        decoded = json.loads(body)
    except (ValueError, RecursionError):
        return
    check_encodable(decoded, path)


def _deeper_than(value: Any, levels: int) -> bool:
    """Whether ``value`` nests more than ``levels`` lists and objects deep (without recursing: an item may
    nest nearly as deep as Python's own recursion limit)."""
    stack = [(value, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth == levels:
                return True
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return False


def _items(raws: list[Any]) -> Iterator[Any]:
    """Each item as objects, one at a time, as they are stored; each view (``_split``) let go once read."""
    for i, raw in enumerate(raws):
        raws[i] = None
        text = bytes(raw)
        try:
            item = orjson.loads(text)  # as every stored JSON is read (an integer past 64 bits is a float)
        except orjson.JSONDecodeError as e:  # e.g. a number no float holds, or a surrogate's bytes
            _unencodable(text, f"processes.{i}")
            raise BadRequest(f"the body is not valid JSON: {e}", code="malformed_json") from None
        # an item nests at most as deep as it has brackets: count them (fast) before measuring
        if text.count(b"{") + text.count(b"[") > MAX_DEPTH - 2 and _deeper_than(item, MAX_DEPTH - 2):
            raise BadRequest(f"the body nests deeper than {MAX_DEPTH} levels", code="too_deep")
        yield item


async def _submit(
    request: Request, svc: Services, who: Caller, short: str, key: str | None, kind: str
) -> Response:
    body = await request.body()
    once = bound(key, f"bulk-{kind} {short}", body)
    status, job = await run_in_threadpool(_submit_body, svc, who, short, body, kind, once)
    return reply(job, status=status, meta={"counts": job["counts"]})


def _submit_body(
    svc: Services, who: Caller, short: str, body: bytes, kind: str, once: Once | None
) -> tuple[int, Any]:
    """On the thread pool: the body split (checked whole before any database work), then ``submit_job`` of
    its items, each parsed as it is stored."""
    return svc.run(job_service.submit_job, who, short, _items(_split(body)), kind=kind, once=once)


@router.patch(
    PROCESSES,
    status_code=202,
    responses=documented(JobOut, 202, 409, links=JOB_LINKS),
    openapi_extra=BULK_BODY,
)
async def bulk_update(
    procedureShortId: str,
    request: Request,
    idempotency_key: IdempotencyKey = None,
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
) -> Response:
    """Update many processes in the background. Each item names its process by ``id`` or by the procedure's
    primary-key attribute, with its fields at the top level or under ``update``."""
    return await _submit(request, svc, who, procedureShortId, idempotency_key, "update")


@router.post(
    f"{PROCESSES}/bulk-create",
    status_code=202,
    responses=documented(JobOut, 202, 409, links=JOB_LINKS),
    openapi_extra=BULK_BODY,
)
async def bulk_create(
    procedureShortId: str,
    request: Request,
    idempotency_key: IdempotencyKey = None,
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
) -> Response:
    """Create many processes in the background, each as Create Process would."""
    return await _submit(request, svc, who, procedureShortId, idempotency_key, "create")


@router.get(JOB, responses=documented(JobOut))
def get_job(jobId: str, who: Caller = Depends(caller), svc: Services = Depends(services)) -> Response:
    """The job's status and timings; ``_meta.counts`` has the entries per status."""
    job = svc.run(job_service.get_job, who, jobId)
    return reply(job, meta={"counts": job["counts"]})


@router.get(f"{JOB}/entries", responses=documented(list[dict[str, Any]]))
def get_entries(
    jobId: str,
    status: Annotated[Literal["INVALID", "NOT_STARTED", "SUCCESS", "ERROR"] | None, Query()] = None,
    after: Annotated[int, Query(ge=-1, lt=2**63)] = -1,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
) -> Response:
    """A page of entries (index, status, the original item, the process id, the errors); page on with
    ``after`` = ``_meta.nextAfter``."""
    page, meta = svc.run(job_service.job_entries, who, jobId, status=status, after=after, limit=limit)
    return reply(page, meta=meta)


@router.post(f"{JOB}/abort", responses=documented(JobOut))
def abort(jobId: str, who: Caller = Depends(caller), svc: Services = Depends(services)) -> Response:
    """Stop the job: entries not yet applied stay NOT_STARTED."""
    job = svc.run(job_service.abort_job, who, jobId)
    return reply(job, meta={"counts": job["counts"]})
