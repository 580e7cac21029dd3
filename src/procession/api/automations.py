"""Automations ("API processes"): defined by admins on a procedure, run by hand for a process, and their
runs followed, cancelled, resumed and re-run."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from procession.api.deps import admin, caller, services
from procession.api.envelope import DATA_ID, documented, link, reply
from procession.api.ext import EXT, PROCESS
from procession.api.jobs import JOB_LINKS
from procession.bootstrap import Services
from procession.services import automations as auto
from procession.services.automations import AutomationInput, RunAgain
from procession.services.batches import BatchInput, submit_batch
from procession.services.common import Caller

router = APIRouter(tags=["automations"])
Doc = dict[str, Any]
RunId = Annotated[int, Path(ge=1, lt=2**63)]
STATUSES = "PENDING|RUNNING|WAITING|SUCCEEDED|FAILED|CANCELLED|SKIPPED"
AUTOMATIONS = "/v1/admin/procedures/{procedureId}/automations"
AUTOMATION = AUTOMATIONS + "/{automationId}"
RUN = EXT + "/runs/{runId}"
BATCH = EXT + "/procedure/{procedureShortId}/automations/{automationId}/batch"


# from a reply holding an automation (its procedure: the request's) to the calls on it
_IN_PATH = "$request.path.procedureId"
AUTOMATION_LINKS = {
    "read": link("get", AUTOMATION, procedureId=_IN_PATH, automationId=DATA_ID),
    "update": link("put", AUTOMATION, procedureId=_IN_PATH, automationId=DATA_ID),
    "delete": link("delete", AUTOMATION, procedureId=_IN_PATH, automationId=DATA_ID),
    "batch": link("post", BATCH, procedureShortId=_IN_PATH, automationId=DATA_ID),
}
# from a reply holding a run to following and acting on it
RUN_LINKS = {
    "read": link("get", RUN, runId=DATA_ID),
    "cancel": link("post", f"{RUN}/cancel", runId=DATA_ID),
    "resume": link("post", f"{RUN}/resume", runId=DATA_ID),
    "rerun": link("post", f"{RUN}/rerun", runId=DATA_ID),
}


@router.post(AUTOMATIONS, status_code=201, responses=documented(Doc, 201, 409, links=AUTOMATION_LINKS))
def create_automation(
    procedureId: str, body: AutomationInput, who: Caller = Depends(admin), svc: Services = Depends(services)
) -> Response:
    """Create an automation; every expression is checked now (422 naming the step, line and column)."""
    return reply(svc.run(auto.save_automation, who.team_id, procedureId, body), status=201)


@router.get(AUTOMATIONS, responses=documented(list[Doc]))
def list_automations(
    procedureId: str, who: Caller = Depends(admin), svc: Services = Depends(services)
) -> Response:
    return reply(svc.run(auto.list_automations, who.team_id, procedureId))


@router.get(AUTOMATION, responses=documented(Doc, links=AUTOMATION_LINKS))
def get_automation(
    procedureId: str, automationId: str, who: Caller = Depends(admin), svc: Services = Depends(services)
) -> Response:
    return reply(svc.run(auto.get_automation, who.team_id, procedureId, automationId))


@router.put(AUTOMATION, responses=documented(Doc, 200, 409, links=AUTOMATION_LINKS))
def update_automation(
    procedureId: str,
    automationId: str,
    body: AutomationInput,
    who: Caller = Depends(admin),
    svc: Services = Depends(services),
) -> Response:
    """Save a new version (runs already started keep theirs). Send ``version`` to get a 409 if it changed."""
    return reply(svc.run(auto.save_automation, who.team_id, procedureId, body, ref=automationId))


@router.delete(AUTOMATION, responses=documented(Doc))
def delete_automation(
    procedureId: str, automationId: str, who: Caller = Depends(admin), svc: Services = Depends(services)
) -> Response:
    return reply(svc.run(auto.delete_automation, who.team_id, procedureId, automationId))


@router.post(
    f"{EXT}{PROCESS}/automations/{{automationId}}/run",
    status_code=202,
    responses=documented(Doc, 202, links=RUN_LINKS),
)
async def run_automation(
    procedureShortId: str,
    processId: str,
    automationId: str,
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
) -> Response:
    """Run an automation for this process now ("process entity"); follow it at ``/v1/ext/runs/{id}``."""
    run = await svc.write(auto.run_automation, who, procedureShortId, processId, automationId)
    return reply(run, status=202)


@router.get(f"{EXT}/runs", responses=documented(list[Doc]))
def list_runs(
    automation: str | None = None,
    process: str | None = None,
    status: Annotated[str | None, Query(pattern=f"^({STATUSES})$")] = None,
    job: str | None = None,
    since: Annotated[int | None, Query(ge=0, lt=2**63, description="created at or after (epoch ms)")] = None,
    before: Annotated[
        int | None, Query(ge=1, lt=2**63, description="ids below this: _meta.nextBefore")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
) -> Response:
    """Runs, newest first, by automation, process, status, job or time."""
    runs = svc.run(
        auto.list_runs, who.team_id, automation_id=automation, process_id=process, status=status, job_id=job,
        since=since, before_id=before, limit=limit,
    )  # fmt: skip
    meta = {"nextBefore": runs[-1]["id"]} if len(runs) == limit else {}
    return reply(runs, meta=meta)


@router.get(RUN, responses=documented(Doc, links=RUN_LINKS))
def get_run(runId: RunId, who: Caller = Depends(caller), svc: Services = Depends(services)) -> Response:
    """A run with every attempt of its steps: input, status, excerpt, duration, output, error."""
    return reply(svc.run(auto.get_run, who.team_id, runId))


@router.post(f"{RUN}/cancel", responses=documented(Doc, 200, 409))
def cancel_run(runId: RunId, who: Caller = Depends(caller), svc: Services = Depends(services)) -> Response:
    """Cancel a waiting or running run."""
    return reply(svc.run(auto.cancel_run, who.team_id, runId))


@router.post(f"{RUN}/resume", responses=documented(Doc, 200, 409))
def resume_run(
    runId: RunId,
    body: RunAgain | None = None,
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
) -> Response:
    """Run a failed run on from the failed step."""
    return reply(svc.run(auto.resume_run, who.team_id, runId, body or RunAgain()))


@router.post(f"{RUN}/rerun", status_code=202, responses=documented(Doc, 202, 409, links=RUN_LINKS))
def rerun(
    runId: RunId,
    body: RunAgain | None = None,
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
) -> Response:
    """A new run from the first step, for the same process and event."""
    return reply(svc.run(auto.rerun, who.team_id, runId, body or RunAgain()), status=202)


@router.post(BATCH, status_code=202, responses=documented(Doc, 202, links=JOB_LINKS))
def run_batch(
    procedureShortId: str,
    automationId: str,
    body: BatchInput,
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
) -> Response:
    """Run an automation for many processes (the control panel): those ``where`` finds, a list of ``ids``, or
    the ``failedOf`` a batch or the automation (``mode``: rerun or resume). A background job, one entry per
    run, followed at ``/v1/ext/background-job/{id}`` (progress, entries, abort)."""
    return reply(svc.run(submit_batch, who, procedureShortId, automationId, body), status=202)
