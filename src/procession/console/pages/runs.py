"""Automations ("API processes") of a procedure: the list with each one's last outcome and counts, the
settings page that creates and edits one (admins), and a run's page with its attempts and actions."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError

from procession.console.auth import Session, admin, signed_in
from procession.console.web import ConsoleRoute, back, call, field_errors, page
from procession.domain.errors import Invalid, ProcessionError
from procession.services import automations as auto
from procession.services import configuration as conf
from procession.store.repositories.runs import UNFINISHED

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
TRIGGERS = {  # what a person reads for each trigger type
    "manual": "only when someone runs it",
    "created": "a process is created",
    "state_reached": "a process reaches a state",
    "status_reached": "a process reaches a status",
    "attribute_changed": "an attribute changes",
    "next_action_due": "a process's next action is due",
    "date_offset": "a date attribute's date comes (minutes before or after)",
}
EXAMPLE_STEPS = [{"name": "notify", "type": "http", "method": "POST", "url": "https://example.com/hook"}]


@router.get("/procedures/{short}/automations")
async def automations(request: Request, short: str, session: Session = Depends(signed_in)) -> Response:
    procedure = await call(request, conf.get_procedure, session.caller.team_id, short)
    rows = await call(request, auto.automation_summaries, session.caller.team_id, short)
    return page(request, "automations.html", {"p": procedure, "rows": rows})


def _blank() -> dict[str, Any]:
    return {
        "name": "", "enabled": True, "trigger": {"type": "manual"}, "condition": "", "steps": EXAMPLE_STEPS,
        "retry": {"maxAttempts": 5, "backoffSeconds": 1},
    }  # fmt: skip


def _editable(found: dict[str, Any]) -> dict[str, str]:
    """An automation as the form's text."""
    trigger = found["trigger"]
    return {
        "name": found["name"],
        "enabled": "on" if found.get("enabled", True) else "",
        "trigger_type": trigger.get("type", "manual"),
        "trigger_state": trigger.get("state") or "",
        "trigger_status": trigger.get("status") or "",
        "trigger_attribute": trigger.get("attribute") or "",
        "trigger_to": json.dumps(trigger["to"]) if "to" in trigger else "",
        "trigger_offset": str(trigger["offsetMs"] // 60_000) if trigger.get("offsetMs") else "",
        "condition": found.get("condition") or "",
        "steps": json.dumps(found["steps"], indent=2),
        "maxAttempts": str(found.get("retry", {}).get("maxAttempts", 5)),
        "backoffSeconds": str(found.get("retry", {}).get("backoffSeconds", 1)),
        "version": str(found.get("version", "")),
    }


@router.get("/procedures/{short}/automations/{automation_id}")
async def edit(
    request: Request, short: str, automation_id: str, session: Session = Depends(admin)
) -> Response:
    procedure = await call(request, conf.get_procedure, session.caller.team_id, short)
    if automation_id == "new":
        found, runs = _blank(), []
    else:
        found = await call(request, auto.get_automation, session.caller.team_id, short, automation_id)
        runs = await call(
            request, auto.list_runs, session.caller.team_id, automation_id=found["id"], limit=20
        )
    context = {
        "p": procedure, "form": _editable(found), "errors": {}, "id": automation_id, "runs": runs,
        "triggers": TRIGGERS,
    }  # fmt: skip
    return page(request, "automation_edit.html", context)


@router.post("/procedures/{short}/automations/{automation_id}")
async def save(
    request: Request, short: str, automation_id: str, session: Session = Depends(admin)
) -> Response:
    received = await request.form()
    form = {k: str(v) for k, v in received.items()}
    try:
        body = _body(form)
        saved = await call(
            request, auto.save_automation, session.caller.team_id, short,
            auto.AutomationInput.model_validate(body), ref=None if automation_id == "new" else automation_id,
        )  # fmt: skip
    except (ProcessionError, ValidationError) as e:
        errors = (
            field_errors(e)
            if isinstance(e, ProcessionError)
            else {".".join(map(str, err["loc"])): err["msg"] for err in e.errors()}
        )
        procedure = await call(request, conf.get_procedure, session.caller.team_id, short)
        context = {
            "p": procedure, "form": form, "errors": errors, "id": automation_id, "runs": [], "triggers": TRIGGERS,
        }  # fmt: skip
        return page(request, "automation_edit.html", context, status=422)
    return back(f"/procedures/{short}/automations/{saved['id']}?saved=1")


def _body(form: dict[str, str]) -> dict[str, Any]:
    """The automation the form describes; ``Invalid`` naming the box whose text is not JSON."""
    try:
        steps = json.loads(form.get("steps") or "[]")
    except ValueError as e:
        raise Invalid.one("invalid_json", f"steps is not JSON: {e}", "steps") from None
    body = {
        "name": form.get("name", ""), "enabled": form.get("enabled") == "on", "trigger": _trigger(form),
        "condition": form.get("condition") or None, "steps": steps,
    }  # fmt: skip
    try:
        body["retry"] = {
            "maxAttempts": int(form.get("maxAttempts") or 5),
            "backoffSeconds": float(form.get("backoffSeconds") or 1),
        }
    except ValueError:
        raise Invalid.one("invalid_value", "retries and back-off are numbers", "retry") from None
    if form.get("version"):
        body["version"] = int(form["version"])
    return body


def _trigger(form: dict[str, str]) -> dict[str, Any]:
    """The trigger the form's fields describe (only those its type reads)."""
    kind = form.get("trigger_type") or "manual"
    trigger: dict[str, Any] = {"type": kind}
    if kind == "state_reached":
        trigger["state"] = form.get("trigger_state", "")
    if kind == "status_reached":
        trigger["status"] = form.get("trigger_status", "")
    if kind in ("attribute_changed", "date_offset"):
        trigger["attribute"] = form.get("trigger_attribute", "")
    to = form.get("trigger_to", "").strip()
    if kind == "attribute_changed" and to:
        try:
            trigger["to"] = json.loads(to)
        except ValueError:
            trigger["to"] = to  # plain text is a text value
    if kind == "date_offset":
        try:
            trigger["offsetMinutes"] = float(form.get("trigger_offset") or 0)
        except ValueError:
            raise Invalid.one("invalid_value", "the minutes are a number", "trigger.offsetMinutes") from None
    return trigger


@router.post("/procedures/{short}/automations/{automation_id}/delete")
async def delete(
    request: Request, short: str, automation_id: str, session: Session = Depends(admin)
) -> Response:
    await call(request, auto.delete_automation, session.caller.team_id, short, automation_id)
    return back(f"/procedures/{short}/automations")


@router.get("/runs/{run_id}")
async def run_page(request: Request, run_id: int, session: Session = Depends(signed_in)) -> Response:
    run = await call(request, auto.get_run, session.caller.team_id, run_id)
    procedure = await call(request, conf.get_procedure, session.caller.team_id, run["procedureId"])
    automation = next((a for a in procedure["automations"] if a["id"] == run["automationId"]), None)
    context = {
        "run": run, "p": procedure, "automation": automation, "live": run["status"] in UNFINISHED,
        "finished": run["status"] not in UNFINISHED,
    }  # fmt: skip
    return page(request, "run.html", context)


@router.post("/runs/{run_id}/{action}")
async def run_action(
    request: Request, run_id: int, action: str, session: Session = Depends(signed_in)
) -> Response:
    team = session.caller.team_id
    if action == "cancel":
        run = await call(request, auto.cancel_run, team, run_id)
    elif action == "resume":
        run = await call(request, auto.resume_run, team, run_id, auto.RunAgain())
    elif action == "rerun":
        run = await call(request, auto.rerun, team, run_id, auto.RunAgain())
    else:
        raise Invalid.one("unknown_action", f"no action {action!r} on a run", "action")
    return back(f"/runs/{run['id']}")
