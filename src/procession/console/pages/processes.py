"""A procedure's processes: the table (filters, sorting, cursor paging), the board (a column per state,
cards moved along the state graph) and the form that creates one."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from procession.console.auth import Session, signed_in
from procession.console.forms import form_value, input_kind, shown
from procession.console.web import ConsoleRoute, back, call, field_errors, page, services
from procession.domain.errors import FieldError, Invalid, NotFound, ProcessionError
from procession.services import configuration as conf
from procession.services.commands import CreateProcess, ListProcesses
from procession.services.processes import create_process
from procession.services.reads import get_process, list_processes

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
PAGE = 25
BOARD_CARDS = 20
FILTERS = ("status", "state", "assignee", "attribute", "value", "q")
SORTABLE = ("updatedAt", "createdAt")  # indexed: a page stays quick whatever the number of processes


def where_of(params: dict[str, str], procedure: dict[str, Any]) -> dict[str, Any]:
    """The list query's ``where`` for a filter form: status, state, assignee, one attribute's value (the
    search box is the primary key's first characters: ``key_prefix``)."""
    where: dict[str, Any] = {}
    for name, key in (("status", "status"), ("state", "state"), ("assignee", "assignedTo")):
        if params.get(name):
            where[key] = params[name]
    if params.get("attribute") and params.get("value", "") != "":
        attr = next((a for a in procedure["attributes"] if a["shortId"] == params["attribute"]), None)
        try:
            value = form_value(attr, [params["value"]]) if attr else params["value"]
        except ValueError as e:
            raise Invalid.one("invalid_value", f"{params['attribute']} {e}", "value") from None
        where[params["attribute"]] = value
    return where


def columns(procedure: dict[str, Any], limit: int = 5) -> list[dict[str, Any]]:
    """The attributes a table or card shows: the primary key first, then the first few others."""
    attrs = procedure["attributes"]
    pk = [a for a in attrs if a["shortId"] == procedure.get("primaryKey")]
    return (pk + [a for a in attrs if a not in pk and input_kind(a)["tag"] != "none"])[:limit]


def title(process: dict[str, Any], procedure: dict[str, Any]) -> str:
    data = {**process["data"], **process.get("derivedData", {})}
    for key in (procedure.get("primaryKey"), "full_name", "name", "subject"):
        if key and data.get(key):
            return str(data[key])
    return str(process["id"])[:8]


async def procedure_context(request: Request, session: Session, short: str) -> dict[str, Any]:
    """The procedure, its users by id, and helpers every process page uses."""
    config = await call(request, conf.team_config, session.caller.team_id)
    procedure: dict[str, Any] | None = next(
        (p for p in config["procedures"] if short in (p["shortId"], p["id"])), None
    )
    if procedure is None:  # its 404
        procedure = await call(request, conf.get_procedure, session.caller.team_id, short)
    users = {u["id"]: u for u in config["users"]}
    return {
        "p": procedure, "users": users, "entities": config["entities"], "shown": shown, "title": title,
        "by_short": {a["shortId"]: a for a in procedure["attributes"]},
    }  # fmt: skip


@router.get("/procedures/{short}/processes")
async def table(request: Request, short: str, session: Session = Depends(signed_in)) -> Response:
    ctx = await procedure_context(request, session, short)
    params = {k: v for k, v in request.query_params.items() if k in (*FILTERS, "sort", "dir", "cursor")}
    pk, q = ctx["p"].get("primaryKey"), params.get("q", "").strip()
    if pk and q and not params.get("cursor"):  # a whole key finds its process at once
        try:
            found = await call(request, get_process, session.caller, ctx["p"]["shortId"], (pk, q))
        except NotFound:
            pass
        else:
            return back(f"/processes/{found['id']}")
    sort_by = params.get("sort") if params.get("sort") in SORTABLE else "updatedAt"
    direction = "asc" if params.get("dir") == "asc" else "desc"
    rows: list[dict[str, Any]] = []
    meta: dict[str, Any] = {}
    errors: dict[str, str] = {}
    try:
        cmd = ListProcesses(
            where=where_of(params, ctx["p"]), limit=PAGE, cursor=params.get("cursor") or None,
            sort=[{"field": sort_by, "dir": direction}],
        )  # fmt: skip
        svc = services(request)
        rows, meta = await call(
            request, list_processes, session.caller, ctx["p"]["shortId"], cmd, cursor_key=svc.cursor_key,
            key_prefix=(q or None) if pk else None,
        )  # fmt: skip
    except ProcessionError as e:
        errors = field_errors(e)
    kept = {k: v for k, v in params.items() if k != "cursor" and v}
    ctx |= {
        "rows": rows, "errors": errors, "params": params, "sort_by": sort_by, "direction": direction,
        "columns": columns(ctx["p"]), "sortable": SORTABLE,
        "next_url": f"?{urlencode({**kept, 'cursor': meta['nextCursor']})}" if meta.get("nextCursor") else None,
        "first_url": f"?{urlencode(kept)}", "paged": bool(params.get("cursor")),
    }  # fmt: skip
    return page(request, "processes.html", ctx)


async def _lane(
    request: Request, session: Session, ctx: dict[str, Any], state: dict[str, Any], cursor: str | None = None
) -> dict[str, Any]:
    """A column of the board: a page of the state's open processes, latest first, and the cursor of the next."""
    cmd = ListProcesses(where={"state": state["shortId"], "status": "OPEN"}, limit=BOARD_CARDS, cursor=cursor)
    cards, meta = await call(
        request,
        list_processes,
        session.caller,
        ctx["p"]["shortId"],
        cmd,
        cursor_key=services(request).cursor_key,
    )
    return {"state": state, "cards": cards, "more": meta.get("nextCursor")}


def _board(request: Request, ctx: dict[str, Any], lanes: list[dict[str, Any]]) -> Response:
    ctx |= {
        "lanes": lanes,
        "moves": ctx["p"]["transitions"],
        "messages": request.query_params.getlist("message"),
    }
    return page(request, "board.html", ctx)


@router.get("/procedures/{short}/board")
async def board(request: Request, short: str, session: Session = Depends(signed_in)) -> Response:
    ctx = await procedure_context(request, session, short)
    return _board(request, ctx, [await _lane(request, session, ctx, s) for s in ctx["p"]["states"]])


@router.get("/procedures/{short}/board/{state}")
async def lane(request: Request, short: str, state: str, session: Session = Depends(signed_in)) -> Response:
    """One column's next cards (``cursor``): the board's "More" button appends them, or, without the board's
    script, a page of its own."""
    ctx = await procedure_context(request, session, short)
    found = next((s for s in ctx["p"]["states"] if s["shortId"] == state), None)
    if found is None:
        raise NotFound(f"{short} has no state {state!r}")
    cursor = request.query_params.get("cursor") or None
    return _board(request, ctx | {"lane_only": True}, [await _lane(request, session, ctx, found, cursor)])


@router.get("/procedures/{short}/processes/new")
async def new(request: Request, short: str, session: Session = Depends(signed_in)) -> Response:
    ctx = await procedure_context(request, session, short)
    return page(request, "process_new.html", _form_context(ctx, {}, {}))


def _form_context(ctx: dict[str, Any], form: dict[str, list[str]], errors: dict[str, str]) -> dict[str, Any]:
    entity = next((e for e in ctx["entities"] if e["id"] == ctx["p"].get("entity")), None)
    inputs = [a for a in ctx["p"]["attributes"] if not a.get("formula")]
    return ctx | {
        "inputs": inputs, "entity": entity, "kind": input_kind, "form": form, "errors": errors,
    }  # fmt: skip


@router.post("/procedures/{short}/processes/new")
async def create(request: Request, short: str, session: Session = Depends(signed_in)) -> Response:
    ctx = await procedure_context(request, session, short)
    received = await request.form()
    form = {k: [str(v) for v in received.getlist(k)] for k in received}
    body: dict[str, Any] = {"data": {}}
    problems: list[FieldError] = []
    for prefix, attrs, target in _sections(ctx, body):
        for attr in attrs:
            name = f"{prefix}.{attr['shortId']}"
            try:
                value = form_value(attr, form.get(name, []))
            except ValueError as e:
                problems.append(FieldError("invalid_value", f"{attr['shortId']} {e}", name))
                continue
            if value is not None:
                target[attr["shortId"]] = value
    for key in ("state", "status", "assignedTo"):
        if form.get(key, [""])[-1]:
            body[key] = form[key][-1]
    if body.get("record", {}).get("data") == {}:
        del body["record"]
    try:
        if problems:
            raise Invalid(problems)
        _, made = await call(
            request, create_process, session.caller, ctx["p"]["shortId"], CreateProcess.model_validate(body)
        )
    except ProcessionError as e:
        return page(request, "process_new.html", _form_context(ctx, form, field_errors(e)), status=422)
    return back(f"/processes/{made['id']}")


def _sections(ctx: dict[str, Any], body: dict[str, Any]) -> list[tuple[str, list[Any], dict[str, Any]]]:
    """The form's parts: the process's attributes, and its record's (when the procedure has an entity)."""
    parts = [("data", [a for a in ctx["p"]["attributes"] if not a.get("formula")], body["data"])]
    entity = next((e for e in ctx["entities"] if e["id"] == ctx["p"].get("entity")), None)
    if entity is not None:
        body["record"] = {"data": {}}
        parts.append(("record.data", entity["attributes"], body["record"]["data"]))
    return parts
