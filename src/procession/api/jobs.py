"""Bulk update / bulk create (asynchronous: 202 with the job) and the background-job API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from procession.api.deps import caller, request_hash, services
from procession.api.envelope import documented, reply
from procession.api.ext import IdempotencyKey
from procession.bootstrap import Services
from procession.services.commands import BulkProcesses
from procession.services.common import Caller
from procession.services.idempotency import run_once
from procession.services.jobs import abort_job, job_entries, job_view, submit_job

router = APIRouter(prefix="/v1/ext", tags=["jobs"])
JobOut = dict[str, Any]


def _submit(
    svc: Services, who: Caller, short: str, body: BulkProcesses, key: str | None, kind: str
) -> Response:
    status, job = run_once(
        lambda: svc.uow(who.team_id),
        key,
        request_hash(f"bulk-{kind} {short}", body) if key is not None else "",
        202,
        lambda uow: submit_job(uow, who, short, body.processes, kind=kind),
    )
    svc.wake(job["id"])
    return reply(job, status=status, meta={"counts": job["counts"]})


@router.patch(
    "/procedure/{procedureShortId}/process", status_code=202, responses=documented(JobOut, 202, 409)
)
def bulk_update(
    procedureShortId: str,
    body: BulkProcesses,
    idempotency_key: IdempotencyKey = None,
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
) -> Response:
    """Update many processes in the background. Each item names its process by ``id`` or by the procedure's
    primary-key attribute, with its fields at the top level or under ``update``."""
    return _submit(svc, who, procedureShortId, body, idempotency_key, "update")


@router.post(
    "/procedure/{procedureShortId}/process/bulk-create",
    status_code=202,
    responses=documented(JobOut, 202, 409),
)
def bulk_create(
    procedureShortId: str,
    body: BulkProcesses,
    idempotency_key: IdempotencyKey = None,
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
) -> Response:
    """Create many processes in the background, each as Create Process would."""
    return _submit(svc, who, procedureShortId, body, idempotency_key, "create")


@router.get("/background-job/{jobId}", responses=documented(JobOut))
def get_job(jobId: str, who: Caller = Depends(caller), svc: Services = Depends(services)) -> Response:
    """The job's status and timings; ``_meta.counts`` has the entries per status."""
    with svc.uow(who.team_id, write=False) as uow:
        job = job_view(uow, jobId)
    return reply(job, meta={"counts": job["counts"]})


@router.get("/background-job/{jobId}/entries", responses=documented(list[dict[str, Any]]))
def get_entries(
    jobId: str,
    status: Annotated[Literal["INVALID", "NOT_STARTED", "SUCCESS", "ERROR"] | None, Query()] = None,
    after: Annotated[int, Query(ge=-1)] = -1,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
) -> Response:
    """A page of entries (index, status, the original item, the process id, the errors); page on with
    ``after`` = ``_meta.nextAfter``."""
    with svc.uow(who.team_id, write=False) as uow:
        page, meta = job_entries(uow, jobId, status=status, after=after, limit=limit)
    return reply(page, meta=meta)


@router.post("/background-job/{jobId}/abort", responses=documented(JobOut))
def abort(jobId: str, who: Caller = Depends(caller), svc: Services = Depends(services)) -> Response:
    """Stop the job: entries not yet applied stay NOT_STARTED."""
    with svc.uow(who.team_id) as uow:
        job = abort_job(uow, jobId)
    return reply(job, meta={"counts": job["counts"]})
