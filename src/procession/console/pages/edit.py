"""Editing a process's data and its record's: a form with the input that fits each attribute type (the
create form's), holding the values stored. Only what a person changed is sent, through the API's use cases
(``update_process``: the one save path, its rules and requirements; ``update_record``); a refusal is shown
beside the input it concerns."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from procession.console.auth import Session, signed_in
from procession.console.forms import form_text, form_value, input_kind
from procession.console.pages.processes import procedure_context
from procession.console.web import ConsoleRoute, back, call, field_errors, page, status_of
from procession.domain.errors import FieldError, Invalid, NotFound, ProcessionError
from procession.services.commands import UpdateProcess, UpdateRecord
from procession.services.processes import update_process
from procession.services.reads import get_process, get_process_by_id
from procession.services.records import get_record, update_record

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
Form = dict[str, list[str]]


async def _context(request: Request, session: Session, process_id: str) -> dict[str, Any]:
    """The procedure's context, the process, its record (if any) and the editable attributes of each."""
    internal = await call(request, get_process_by_id, session.caller, process_id)
    ctx = await procedure_context(request, session, internal["procedure"])
    process = await call(request, get_process, session.caller, ctx["p"]["shortId"], (process_id,))
    record = None
    if process.get("record"):
        try:
            record = await call(request, get_record, session.caller, process["record"])
        except NotFound:
            record = None
    editable = [a for a in ctx["p"]["attributes"] if not a.get("formula") and input_kind(a)["tag"] != "none"]
    record_attrs = (
        [a for a in record["entity"]["attributes"] if input_kind(a)["tag"] != "none"] if record else []
    )
    return ctx | {
        "process": process, "record": record, "inputs": editable, "record_inputs": record_attrs,
        "kind": input_kind,
    }  # fmt: skip


def _stored(ctx: dict[str, Any]) -> Form:
    """Every input's text as stored: what the form shows first, and what a sent form is compared with."""
    out = {
        f"data.{a['shortId']}": form_text(a, ctx["process"]["data"].get(a["shortId"]), ctx["users"])
        for a in ctx["inputs"]
    }
    if ctx["record"]:
        data = ctx["record"]["data"]
        out |= {
            f"record.data.{a['shortId']}": form_text(a, data.get(a["shortId"]), ctx["users"])
            for a in ctx["record_inputs"]
        }
    return out


def _page(
    request: Request, ctx: dict[str, Any], form: Form, errors: dict[str, str], status: int = 200
) -> Response:
    ctx |= {"form": form, "errors": errors, "saved": request.query_params.get("saved", "")}
    return page(request, "process_edit.html", ctx, status=status)


@router.get("/processes/{process_id}/edit")
async def edit(request: Request, process_id: str, session: Session = Depends(signed_in)) -> Response:
    ctx = await _context(request, session, process_id)
    return _page(request, ctx, _stored(ctx), {})


def _changed(attrs: list[dict[str, Any]], prefix: str, sent: Form, stored: Form) -> dict[str, Any]:
    """The values a person changed (None: cleared), by shortId; ``Invalid`` for text that is not the type's."""
    out: dict[str, Any] = {}
    problems: list[FieldError] = []
    for attr in attrs:
        name, multiple = f"{prefix}.{attr['shortId']}", input_kind(attr).get("multiple")
        if name not in sent and not multiple:  # not in the form (a multiple choice left empty is not sent)
            continue
        now = [v.strip() for v in sent.get(name, []) if v.strip()]
        if (now if multiple else now[-1:]) == stored.get(name, []):
            continue
        try:
            out[attr["shortId"]] = form_value(attr, now)
        except ValueError as e:
            problems.append(FieldError("invalid_value", f"{attr['shortId']} {e}", name))
    if problems:
        raise Invalid(problems)
    return out


async def _sent(request: Request) -> Form:
    """The form's values by name (a browser sends a text box's lines ending in CR LF: read as they were)."""
    received = await request.form()
    return {k: [str(v).replace("\r\n", "\n") for v in received.getlist(k)] for k in received}


@router.post("/processes/{process_id}/edit")
async def save(request: Request, process_id: str, session: Session = Depends(signed_in)) -> Response:
    ctx = await _context(request, session, process_id)
    sent = await _sent(request)
    stored = _stored(ctx)
    try:
        body: dict[str, Any] = {"data": _changed(ctx["inputs"], "data", sent, stored)}
        version = (sent.get("version") or [""])[-1]
        if version.isdecimal():
            body["version"] = int(version)
        if body["data"]:
            command = UpdateProcess.model_validate(body)
            await call(request, update_process, session.caller, ctx["p"]["shortId"], (process_id,), command)
    except ProcessionError as e:
        return _page(request, ctx, stored | sent, field_errors(e), status=status_of(e))
    return back(f"/processes/{process_id}/edit?saved=data")


@router.post("/processes/{process_id}/record")
async def save_record(request: Request, process_id: str, session: Session = Depends(signed_in)) -> Response:
    ctx = await _context(request, session, process_id)
    if ctx["record"] is None:
        raise NotFound("this process has no record")
    sent = await _sent(request)
    stored = _stored(ctx)
    try:
        data = _changed(ctx["record_inputs"], "record.data", sent, stored)
        if data:
            await call(
                request,
                update_record,
                session.caller,
                ctx["record"]["entity"]["id"],
                (ctx["record"]["id"],),
                UpdateRecord(data=data),
            )
    except ProcessionError as e:  # the record's fields are named data.… by the use case: here, record.data.…
        errors = {f"record.{k}" if k.startswith("data.") else k: m for k, m in field_errors(e).items()}
        return _page(request, ctx, stored | sent, errors, status=status_of(e))
    return back(f"/processes/{process_id}/edit?saved=record")
