"""Settings → webhook subscriptions (admins): listed, created (the signing secret shown once), edited,
deleted; a subscription's delivery log (status, attempts, each attempt's response) with a replay of one
delivery or of every failed one, through the API's use cases."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response

from procession.console.auth import Session, admin
from procession.console.web import ConsoleRoute, back, call, checked, field_errors, page, status_of
from procession.domain.errors import Invalid, ProcessionError
from procession.domain.webhooks import EVENT_TYPES
from procession.services import webhooks as hooks

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
DeliveryId = Annotated[int, Path(ge=1, lt=2**63)]
DELIVERIES = 25  # a page of the log
STATUSES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED")
NOTICES = {
    "saved": "Saved.",
    "replayed": "{n} failed deliveries sent again.",
    "replay": "Delivery {n} sent again.",
}
NEW = {"eventTypes": [], "timeoutSeconds": "10", "maxAttempts": "", "backoffSeconds": "5", "enabled": "on"}


async def _list_page(
    request: Request,
    session: Session,
    *,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    made: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    rows = await call(request, hooks.list_webhooks, session.caller.team_id)
    context = {
        "rows": rows, "form": form or NEW, "errors": errors or {}, "made": made, "event_types": EVENT_TYPES,
    }  # fmt: skip
    return page(request, "settings_webhooks.html", context, status=status)


@router.get("/settings/webhooks")
async def webhooks(request: Request, session: Session = Depends(admin)) -> Response:
    return await _list_page(request, session)


async def _form(request: Request) -> dict[str, Any]:
    received = await request.form()
    form: dict[str, Any] = {k: str(v) for k, v in received.items() if k != "eventTypes"}
    return form | {"eventTypes": [str(v) for v in received.getlist("eventTypes")]}


def _body(form: dict[str, Any]) -> dict[str, Any]:
    """The subscription the form describes; ``Invalid`` naming the box whose text is not a number."""
    body: dict[str, Any] = {
        "url": form.get("url", "").strip(), "description": form.get("description", ""),
        "eventTypes": form["eventTypes"], "enabled": form.get("enabled") == "on",
    }  # fmt: skip
    try:
        body["timeoutSeconds"] = float(form.get("timeoutSeconds") or 10)
        body["retry"] = {
            "maxAttempts": int(form["maxAttempts"]) if form.get("maxAttempts") else None,
            "backoffSeconds": float(form.get("backoffSeconds") or 5),
        }
    except ValueError:
        raise Invalid.one(
            "invalid_value", "the timeout, attempts and back-off are numbers", "retry"
        ) from None
    if form.get("version", "").isdecimal():
        body["version"] = int(form["version"])
    return body


@router.post("/settings/webhooks")
async def create(request: Request, session: Session = Depends(admin)) -> Response:
    form = await _form(request)
    try:
        cmd = checked(hooks.WebhookInput, _body(form))
        made = await call(request, hooks.create_webhook, session.caller.team_id, cmd)
    except ProcessionError as e:
        return await _list_page(request, session, form=form, errors=field_errors(e), status=status_of(e))
    return await _list_page(request, session, made=made)  # its secret, shown this once


@router.get("/settings/webhooks/{webhook_id}")
async def webhook(request: Request, webhook_id: str, session: Session = Depends(admin)) -> Response:
    found = await call(request, hooks.get_webhook, session.caller.team_id, webhook_id)
    return await _webhook_page(request, session, found, _editable(found), {})


def _editable(found: dict[str, Any]) -> dict[str, Any]:
    retry = found["retry"]
    return {
        "url": found["url"], "description": found["description"], "eventTypes": found["eventTypes"],
        "enabled": "on" if found["enabled"] else "", "timeoutSeconds": str(found["timeoutSeconds"]),
        "maxAttempts": "" if retry["maxAttempts"] is None else str(retry["maxAttempts"]),
        "backoffSeconds": str(retry["backoffSeconds"]), "version": str(found["version"]),
    }  # fmt: skip


async def _webhook_page(
    request: Request,
    session: Session,
    found: dict[str, Any],
    form: dict[str, Any],
    errors: dict[str, str],
    *,
    status: int = 200,
) -> Response:
    """The subscription's form and its delivery log (``?status=`` to keep one status, ``?before=`` to page)."""
    wanted = request.query_params.get("status")
    wanted = wanted if wanted in STATUSES else None
    before = request.query_params.get("before", "")
    before_id = int(before) if before.isdecimal() and int(before) < 2**63 else None
    deliveries = await call(
        request, hooks.list_deliveries, session.caller.team_id, found["id"], status=wanted,
        before=before_id, limit=DELIVERIES,
    )  # fmt: skip
    older = deliveries[-1]["id"] if len(deliveries) == DELIVERIES else None
    context = {
        "w": found, "form": form, "errors": errors, "event_types": EVENT_TYPES, "deliveries": deliveries,
        "statuses": STATUSES, "wanted": wanted, "older": older, "paged": before_id is not None,
        "notice": NOTICES.get(request.query_params.get("done", ""), "").format(
            n=request.query_params.get("n", "")[:20]
        ),
    }  # fmt: skip
    return page(request, "settings_webhook.html", context, status=status)


@router.post("/settings/webhooks/{webhook_id}")
async def update(request: Request, webhook_id: str, session: Session = Depends(admin)) -> Response:
    team = session.caller.team_id
    form = await _form(request)
    try:
        cmd = checked(hooks.WebhookUpdate, _body(form))
        await call(request, hooks.update_webhook, team, webhook_id, cmd)
    except ProcessionError as e:
        found = await call(request, hooks.get_webhook, team, webhook_id)
        return await _webhook_page(request, session, found, form, field_errors(e), status=status_of(e))
    return back(f"/settings/webhooks/{webhook_id}?done=saved")


@router.post("/settings/webhooks/{webhook_id}/delete")
async def delete(request: Request, webhook_id: str, session: Session = Depends(admin)) -> Response:
    await call(request, hooks.delete_webhook, session.caller.team_id, webhook_id)
    return back("/settings/webhooks")


@router.post("/settings/webhooks/{webhook_id}/replay-failed")
async def replay_failed(request: Request, webhook_id: str, session: Session = Depends(admin)) -> Response:
    done = await call(request, hooks.replay_failed, session.caller.team_id, webhook_id, hooks.ReplayFailed())
    return back(f"/settings/webhooks/{webhook_id}?done=replayed&n={done['replayed']}")


@router.post("/settings/webhooks/{webhook_id}/deliveries/{delivery_id}/replay")
async def replay(
    request: Request, webhook_id: str, delivery_id: DeliveryId, session: Session = Depends(admin)
) -> Response:
    await call(request, hooks.replay_delivery, session.caller.team_id, webhook_id, delivery_id)
    return back(f"/settings/webhooks/{webhook_id}?done=replay&n={delivery_id}")
