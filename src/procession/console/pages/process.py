"""One process: its fields, data, record, links to other systems, requirements (met or not, and what each
blocks), timeline and runs, and what a person does with it (change its state, status or assignee; run an
automation now; its data is edited in ``edit``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from procession.console.auth import Session, signed_in
from procession.console.pages.processes import procedure_context, title
from procession.console.web import ConsoleRoute, back, call, page, services
from procession.domain.errors import NotFound, ProcessionError
from procession.services import configuration as conf
from procession.services.automations import list_runs, run_automation
from procession.services.commands import ListProcesses, UpdateProcess
from procession.services.connectors import process_links
from procession.services.processes import update_process
from procession.services.reads import (
    get_process,
    get_process_by_id,
    list_processes,
    process_history,
    process_requirements,
)
from procession.services.records import get_record, list_records

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
TIMELINE = 100
RUNS = 20
STATUSES = ("OPEN", "COMPLETED", "CANCELLED")


@router.get("/processes/{process_id}")
async def process_page(request: Request, process_id: str, session: Session = Depends(signed_in)) -> Response:
    who = session.caller
    internal = await call(request, get_process_by_id, who, process_id)
    ctx = await procedure_context(request, session, internal["procedure"])
    short = ctx["p"]["shortId"]
    process = await call(request, get_process, who, short, (process_id,))
    events, _ = await call(request, process_history, who, short, (process_id,), limit=TIMELINE)
    runs = await call(request, list_runs, who.team_id, process_id=process_id, limit=RUNS)
    record = None
    if process.get("record"):
        try:
            record = await call(request, get_record, who, process["record"])
        except NotFound:
            record = None
    links = await call(request, process_links, who, short, (process_id,))
    meets = await call(request, process_requirements, who, short, (process_id,))
    names = {a["id"]: a["name"] for a in ctx["p"]["automations"]}
    ctx |= {
        "process": process, "events": events, "runs": runs, "record": record, "automation_names": names,
        "links": links, "meets": meets,
        "moves": ctx["p"]["transitions"].get(process["state"], []), "statuses": STATUSES,
        "messages": request.query_params.getlist("message"),
    }  # fmt: skip
    return page(request, "process.html", ctx)


async def _update(
    request: Request, session: Session, short: str, process_id: str, fields: dict[str, Any]
) -> Response:
    """Save ``fields`` on the process; from a script, the outcome as JSON (a refusal with its reason), from a
    form, back to where the form was (a refusal shown there)."""
    target = str((await request.form()).get("next") or f"/processes/{process_id}")
    if not target.startswith("/") or target.startswith("//"):
        target = "/"
    scripted = "application/json" in request.headers.get("accept", "")
    try:
        change = UpdateProcess.model_validate(fields)
        await call(request, update_process, session.caller, short, (process_id,), change)
    except (ProcessionError, ValidationError) as e:
        reasons = (
            [err.message for err in e.errors]
            if isinstance(e, ProcessionError)
            else [err["msg"] for err in e.errors()]
        )
        if scripted:  # each reason (an unmet requirement names itself and what it reads)
            return JSONResponse({"ok": False, "message": "; ".join(reasons), "reasons": reasons}, 422)
        sep = "&" if "?" in target else "?"
        return back(f"{target}{sep}{urlencode([('message', r) for r in reasons])}")
    if scripted:
        return JSONResponse({"ok": True})
    return back(target)


@router.post("/procedures/{short}/processes/{process_id}/state")
async def move(
    request: Request, short: str, process_id: str, session: Session = Depends(signed_in)
) -> Response:
    state = str((await request.form()).get("state", ""))
    return await _update(request, session, short, process_id, {"state": state})


@router.post("/procedures/{short}/processes/{process_id}/status")
async def status(
    request: Request, short: str, process_id: str, session: Session = Depends(signed_in)
) -> Response:
    value = str((await request.form()).get("status", ""))
    return await _update(request, session, short, process_id, {"status": value})


@router.post("/procedures/{short}/processes/{process_id}/assignee")
async def assign(
    request: Request, short: str, process_id: str, session: Session = Depends(signed_in)
) -> Response:
    value = str((await request.form()).get("assignedTo", "")) or None
    return await _update(request, session, short, process_id, {"assignedTo": value})


@router.post("/procedures/{short}/processes/{process_id}/automations/{automation_id}/run")
async def run_now(
    request: Request, short: str, process_id: str, automation_id: str, session: Session = Depends(signed_in)
) -> Response:
    run = await call(request, run_automation, session.caller, short, process_id, automation_id)
    return back(f"/runs/{run['id']}")


@router.get("/records/{record_id}")
async def record_page(request: Request, record_id: str, session: Session = Depends(signed_in)) -> Response:
    record = await call(request, get_record, session.caller, record_id)
    config = await call(request, conf.team_config, session.caller.team_id)
    svc, found = services(request), []
    for procedure in config["procedures"]:
        if procedure.get("entity") == record["entity"]["id"]:
            cmd = ListProcesses(where={"record": record_id}, limit=50)
            rows, _ = await call(
                request, list_processes, session.caller, procedure["id"], cmd, cursor_key=svc.cursor_key
            )
            found += [(procedure, r) for r in rows]
    return page(request, "record.html", {"record": record, "processes": found, "title": title})


@router.get("/entities/{short}/records")
async def records(request: Request, short: str, session: Session = Depends(signed_in)) -> Response:
    after = request.query_params.get("after") or None
    entity, rows, more = await call(request, list_records, session.caller, short, after=after)
    return page(request, "records.html", {"entity": entity, "rows": rows, "more": more})
