"""Settings → connectors (admins): the team's accounts at other services, listed, created, edited and
deleted through the API's use cases. Credentials are write-only: a form never shows one back, only whether
it is set; left blank on an edit, it is kept; "remove" clears it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from procession.console.auth import Session, admin
from procession.console.web import (
    ConsoleRoute,
    back,
    call,
    checked,
    field_errors,
    page,
    services,
    status_of,
)
from procession.domain.connectors import KINDS
from procession.domain.errors import ProcessionError
from procession.services import connectors as conn

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
SETTINGS = {  # what a person reads for each setting and credential
    "portalId": "Portal id (HubSpot: links to its objects)",
    "contentUrl": "Upload host (Dropbox; its own by default)",
    "authHeader": "Header the credential is sent in",
    "token": "Access token",
    "auth": "Header value (e.g. Bearer …)",
}


def _kinds() -> dict[str, dict[str, Any]]:
    return {
        name: {"base": kind.base_url, "settings": list(kind.settings), "credentials": list(kind.credentials)}
        for name, kind in KINDS.items()
    }


async def _list_page(
    request: Request,
    session: Session,
    *,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    rows = await call(request, conn.list_connectors, session.caller.team_id)
    context = {
        "rows": rows, "form": form or {"kind": "http"}, "errors": errors or {}, "kinds": _kinds(),
        "labels": SETTINGS,
    }  # fmt: skip
    return page(request, "settings_connectors.html", context, status=status)


@router.get("/settings/connectors")
async def connectors(request: Request, session: Session = Depends(admin)) -> Response:
    return await _list_page(request, session)


def _body(form: dict[str, str], kind: str) -> conn.ConnectorInput:
    """The connector the form describes: only its kind's settings and credentials; a blank credential is
    not sent (kept as it is), a ticked "remove" sends it as null (cleared)."""
    known = KINDS.get(kind)
    settings = {k: form.get(f"settings.{k}", "").strip() or None for k in (known.settings if known else ())}
    credentials: dict[str, str | None] = {}
    for key in known.credentials if known else ():
        if form.get(f"remove.{key}") == "on":
            credentials[key] = None
        elif form.get(f"credentials.{key}", ""):
            credentials[key] = form[f"credentials.{key}"]
    body: dict[str, Any] = {
        "name": form.get("name", "").strip(), "kind": kind, "baseUrl": form.get("baseUrl", "").strip() or None,
        "settings": {k: v for k, v in settings.items() if v is not None or form.get("id")},
        "credentials": credentials,
    }  # fmt: skip
    if form.get("version", "").isdecimal():
        body["version"] = int(form["version"])
    return checked(conn.ConnectorInput, body)


def _form(request_form: Any) -> dict[str, str]:
    """The form's fields; of a name sent twice (two kinds both have a token), the value typed."""
    out: dict[str, str] = {}
    for k, v in request_form.multi_items():
        if str(v) or k not in out:
            out[k] = str(v)
    return out


@router.post("/settings/connectors")
async def create(request: Request, session: Session = Depends(admin)) -> Response:
    form = _form(await request.form())
    try:
        body = _body(form, form.get("kind", ""))
        await call(
            request, conn.create_connector, session.caller.team_id, body, vault=services(request).vault
        )
    except ProcessionError as e:
        kept = {k: v for k, v in form.items() if not k.startswith("credentials.")}  # never sent back
        return await _list_page(request, session, form=kept, errors=field_errors(e), status=status_of(e))
    return back("/settings/connectors?saved=" + form.get("name", ""))


@router.get("/settings/connectors/{connector_id}")
async def edit(request: Request, connector_id: str, session: Session = Depends(admin)) -> Response:
    found = await call(request, conn.get_connector, session.caller.team_id, connector_id)
    return _edit_page(request, found, _editable(found), {})


def _editable(found: dict[str, Any]) -> dict[str, str]:
    form = {
        "id": found["id"],
        "name": found["name"],
        "baseUrl": found["baseUrl"],
        "version": str(found["version"]),
    }
    return form | {f"settings.{k}": "" if v is None else str(v) for k, v in found["settings"].items()}


def _edit_page(
    request: Request, found: dict[str, Any], form: dict[str, str], errors: dict[str, str], status: int = 200
) -> Response:
    context = {
        "c": found, "form": form, "errors": errors, "kind": _kinds()[found["kind"]], "labels": SETTINGS,
        "saved": request.query_params.get("saved"),
    }  # fmt: skip
    return page(request, "settings_connector.html", context, status=status)


@router.post("/settings/connectors/{connector_id}")
async def update(request: Request, connector_id: str, session: Session = Depends(admin)) -> Response:
    team = session.caller.team_id
    found = await call(request, conn.get_connector, team, connector_id)
    form = _form(await request.form()) | {"id": found["id"]}
    try:
        body = _body(form, found["kind"])
        saved = await call(
            request, conn.update_connector, team, found["id"], body, vault=services(request).vault
        )
    except ProcessionError as e:
        kept = {k: v for k, v in form.items() if not k.startswith("credentials.")}
        return _edit_page(request, found, kept, field_errors(e), status=status_of(e))
    return back(f"/settings/connectors/{saved['id']}?saved=1")


@router.post("/settings/connectors/{connector_id}/delete")
async def delete(request: Request, connector_id: str, session: Session = Depends(admin)) -> Response:
    team = session.caller.team_id
    try:
        await call(request, conn.delete_connector, team, connector_id)
    except ProcessionError as e:
        if status_of(e) == 404:
            raise
        found = await call(request, conn.get_connector, team, connector_id)
        return _edit_page(request, found, _editable(found), {"": e.message}, status=status_of(e))
    return back("/settings/connectors")
