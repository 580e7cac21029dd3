"""Background jobs (a progress bar each; a job's failed entries and their CSV) and the control panel, which
starts an automation over the processes a filter finds and follows it as a job."""

from __future__ import annotations

import csv
import io
import json
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from procession.console.auth import Session, signed_in
from procession.console.pages.processes import where_of
from procession.console.web import ConsoleRoute, back, call, field_errors, page
from procession.domain.errors import Invalid, ProcessionError
from procession.services import configuration as conf
from procession.services import jobs as job_service
from procession.services.automations import list_runs
from procession.services.batches import BatchInput, FailedOf, submit_batch
from procession.services.reads import count_processes

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
FAILED_SHOWN = 100
CSV_PAGE = 1000
RUNNING = ("NOT_STARTED", "IN_PROGRESS")
ENTRY_STATUSES = ("SUCCESS", "ERROR", "INVALID", "NOT_STARTED")


def progress(job: dict[str, Any]) -> dict[str, Any]:
    """A job's share done, in whole percent, with its counts."""
    counts, total = job["counts"], job["total"] or 0
    done = total - counts["NOT_STARTED"]
    finished = job["status"] not in RUNNING
    percent = 100 if finished and job["status"] != "ABORTED" else (100 * done // total if total else 0)
    return {"done": done, "percent": percent, "finished": finished}


@router.get("/jobs")
async def jobs(request: Request, session: Session = Depends(signed_in)) -> Response:
    rows = await call(request, job_service.list_jobs, session.caller)
    names = await _procedure_names(request, session)
    live = any(j["status"] in RUNNING for j in rows)
    context = {"rows": rows, "progress": progress, "names": names, "live": live}
    return page(request, "jobs.html", context)


async def _procedure_names(request: Request, session: Session) -> dict[str, dict[str, Any]]:
    config = await call(request, conf.team_config, session.caller.team_id)
    return {p["id"]: p for p in config["procedures"]}


@router.get("/jobs/{job_id}")
async def job_page(request: Request, job_id: str, session: Session = Depends(signed_in)) -> Response:
    job = await call(request, job_service.get_job, session.caller, job_id)
    show = request.query_params.get("show", "failed")
    after = _index(request.query_params.get("after")) if show != "failed" else -1
    entries: list[Any] = []
    more = None
    for status in ("ERROR", "INVALID") if show == "failed" else (None if show == "all" else show,):
        if status not in (None, *ENTRY_STATUSES):
            continue
        page_of, meta = await call(
            request, job_service.job_entries, session.caller, job_id, status=status, after=after,
            limit=FAILED_SHOWN,
        )  # fmt: skip
        entries += page_of
        more = meta["nextAfter"] if show != "failed" else None
    names = await _procedure_names(request, session)
    runs = await call(request, list_runs, session.caller.team_id, job_id=job_id, limit=1)
    context = {
        "job": job, "p": names.get(job["procedure"]), "entries": entries, "bar": progress(job), "show": show,
        "more": more, "shows": ("failed", "all", *ENTRY_STATUSES),
        "message": request.query_params.get("message", ""),
        "automation": runs[0]["automationId"] if job["kind"] == "run" and runs else None,
    }  # fmt: skip
    return page(request, "job.html", context)


def _index(text: str | None) -> int:
    """An entry index from a link (-1, before the first, for anything else)."""
    return int(text) if text and text.isdecimal() and len(text) < 18 else -1


@router.get("/jobs/{job_id}/failed.csv")
async def failed_csv(request: Request, job_id: str, session: Session = Depends(signed_in)) -> Response:
    """Every entry that failed (ERROR) or was refused (INVALID): index, status, process, errors, item."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["index", "status", "processId", "errors", "item"])
    for status in ("ERROR", "INVALID"):
        after = -1
        while True:
            entries, meta = await call(
                request, job_service.job_entries, session.caller, job_id, status=status, after=after,
                limit=CSV_PAGE,
            )  # fmt: skip
            for e in entries:
                errors = "; ".join(err.get("message", "") for err in e["errors"])
                writer.writerow(
                    [e["index"], e["status"], e["processId"] or "", errors, json.dumps(e["item"])]
                )
            if not meta["hasMore"]:
                break
            after = meta["nextAfter"]
    headers = {"content-disposition": f'attachment; filename="job-{job_id}-failed.csv"'}
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)


@router.post("/jobs/{job_id}/abort")
async def abort(request: Request, job_id: str, session: Session = Depends(signed_in)) -> Response:
    await call(request, job_service.abort_job, session.caller, job_id)
    return back(f"/jobs/{job_id}")


@router.post("/jobs/{job_id}/rerun-failed")
async def rerun_failed(request: Request, job_id: str, session: Session = Depends(signed_in)) -> Response:
    """The failed runs of a batch, again from their first step, as a new job."""
    form = await request.form()
    procedure, automation = str(form.get("procedure", "")), str(form.get("automation", ""))
    cmd = BatchInput(
        failedOf=FailedOf(job=job_id), mode="resume" if form.get("mode") == "resume" else "rerun"
    )
    try:
        job = await call(request, submit_batch, session.caller, procedure, automation, cmd)
    except ProcessionError as e:
        return back(f"/jobs/{job_id}?message={quote(e.message)}")
    return back(f"/jobs/{job['id']}")


@router.get("/control-panel")
async def control_panel(request: Request, session: Session = Depends(signed_in)) -> Response:
    config = await call(request, conf.team_config, session.caller.team_id)
    procedures = config["procedures"]
    chosen = request.query_params.get("procedure") or (procedures[0]["shortId"] if procedures else "")
    procedure = next((p for p in procedures if p["shortId"] == chosen), None)
    context = {
        "procedures": procedures, "p": procedure, "users": config["users"], "params": request.query_params,
        "errors": {},
    }  # fmt: skip
    return page(request, "control_panel.html", context)


@router.get("/control-panel/count")
async def count(request: Request, session: Session = Depends(signed_in)) -> Response:
    """How many processes the panel's filter finds (for the live count), or why the filter is wrong."""
    params = dict(request.query_params)
    try:
        procedure = await call(
            request, conf.get_procedure, session.caller.team_id, params.get("procedure", "")
        )
        found, more = await call(
            request, count_processes, session.caller, procedure["shortId"], where_of(params, procedure)
        )
    except ProcessionError as e:
        return JSONResponse({"error": "; ".join(err.message for err in e.errors)}, status_code=422)
    return JSONResponse({"count": found, "more": more})


@router.post("/control-panel")
async def start(request: Request, session: Session = Depends(signed_in)) -> Response:
    form = {k: str(v) for k, v in (await request.form()).items()}
    config = await call(request, conf.team_config, session.caller.team_id)
    procedure = next((p for p in config["procedures"] if p["shortId"] == form.get("procedure")), None)
    try:
        if procedure is None:
            raise Invalid.one("required", "choose a procedure", "procedure")
        cmd = BatchInput(where=where_of(form, procedure))
        job = await call(
            request, submit_batch, session.caller, procedure["shortId"], form.get("automation", ""), cmd
        )
    except ProcessionError as e:
        context = {
            "procedures": config["procedures"], "p": procedure, "users": config["users"], "params": form,
            "errors": field_errors(e),
        }  # fmt: skip
        return page(request, "control_panel.html", context, status=422)
    return back(f"/jobs/{job['id']}")
