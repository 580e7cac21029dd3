"""Webhook subscriptions, ``/v1/admin/webhooks``: an endpoint subscribed to event types, its deliveries
(each with its attempts), and replays. Admin keys only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from procession.api.deps import admin, services
from procession.api.envelope import DATA_ID, documented, link, reply
from procession.bootstrap import Services
from procession.services import webhooks as hooks
from procession.services.common import Caller
from procession.services.webhooks import ReplayFailed, WebhookInput, WebhookUpdate

router = APIRouter(prefix="/v1/admin/webhooks", tags=["webhooks"])
Doc = dict[str, Any]
DeliveryId = Annotated[int, Path(ge=1, lt=2**63)]
WEBHOOK = "/{webhookId}"
DELIVERIES = WEBHOOK + "/deliveries"
DELIVERY = DELIVERIES + "/{deliveryId}"
STATUSES = "PENDING|RUNNING|SUCCEEDED|FAILED"

_AT = router.prefix
# from a reply holding a subscription to the calls on it
WEBHOOK_LINKS = {
    "read": link("get", _AT + WEBHOOK, webhookId=DATA_ID),
    "update": link("put", _AT + WEBHOOK, webhookId=DATA_ID),
    "delete": link("delete", _AT + WEBHOOK, webhookId=DATA_ID),
    "deliveries": link("get", _AT + DELIVERIES, webhookId=DATA_ID),
    "replayFailed": link("post", _AT + WEBHOOK + "/replay-failed", webhookId=DATA_ID),
}
_HOOK = "$response.body#/_data/webhookId"
DELIVERY_LINKS = {
    "read": link("get", _AT + DELIVERY, webhookId=_HOOK, deliveryId=DATA_ID),
    "replay": link("post", _AT + DELIVERY + "/replay", webhookId=_HOOK, deliveryId=DATA_ID),
}


@router.post("", status_code=201, responses=documented(Doc, 201, links=WEBHOOK_LINKS))
def create_webhook(
    body: WebhookInput, who: Caller = Depends(admin), svc: Services = Depends(services)
) -> Response:
    """Subscribe an endpoint to event types. The reply holds the signing ``secret`` (``whsec_…``): it is shown
    this once, never again (keep it where the receiver verifies signatures)."""
    return reply(svc.run(hooks.create_webhook, who.team_id, body), status=201)


@router.get("", responses=documented(list[Doc]))
def list_webhooks(who: Caller = Depends(admin), svc: Services = Depends(services)) -> Response:
    """The team's subscriptions (without their secrets)."""
    return reply(svc.run(hooks.list_webhooks, who.team_id))


@router.get(WEBHOOK, responses=documented(Doc, links=WEBHOOK_LINKS))
def get_webhook(webhookId: str, who: Caller = Depends(admin), svc: Services = Depends(services)) -> Response:
    """A subscription: ``enabled`` false with ``disabledAt`` and ``disabledReason`` once it was disabled."""
    return reply(svc.run(hooks.get_webhook, who.team_id, webhookId))


@router.put(WEBHOOK, responses=documented(Doc, 200, 409, links=WEBHOOK_LINKS))
def update_webhook(
    webhookId: str, body: WebhookUpdate, who: Caller = Depends(admin), svc: Services = Depends(services)
) -> Response:
    """Change the fields sent; ``"enabled": true`` enables a disabled subscription. Send ``version`` to get a
    409 if it changed."""
    return reply(svc.run(hooks.update_webhook, who.team_id, webhookId, body))


@router.delete(WEBHOOK, responses=documented(Doc))
def delete_webhook(
    webhookId: str, who: Caller = Depends(admin), svc: Services = Depends(services)
) -> Response:
    """Remove a subscription and its deliveries."""
    return reply(svc.run(hooks.delete_webhook, who.team_id, webhookId))


@router.get(DELIVERIES, responses=documented(list[Doc]))
def list_deliveries(
    webhookId: str,
    status: Annotated[str | None, Query(pattern=f"^({STATUSES})$")] = None,
    before: Annotated[
        int | None, Query(ge=1, lt=2**63, description="ids below this: _meta.nextBefore")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    who: Caller = Depends(admin),
    svc: Services = Depends(services),
) -> Response:
    """The subscription's deliveries, newest first, each with its attempts (status, excerpt, error, time)."""
    found = svc.run(hooks.list_deliveries, who.team_id, webhookId, status=status, before=before, limit=limit)
    meta = {"nextBefore": found[-1]["id"]} if len(found) == limit else {}
    return reply(found, meta=meta)


@router.get(DELIVERY, responses=documented(Doc, links=DELIVERY_LINKS))
def get_delivery(
    webhookId: str, deliveryId: DeliveryId, who: Caller = Depends(admin), svc: Services = Depends(services)
) -> Response:
    """A delivery with the message it sends and its attempts."""
    return reply(svc.run(hooks.get_delivery, who.team_id, webhookId, deliveryId))


@router.post(DELIVERY + "/replay", status_code=202, responses=documented(Doc, 202, 409, links=DELIVERY_LINKS))
def replay_delivery(
    webhookId: str, deliveryId: DeliveryId, who: Caller = Depends(admin), svc: Services = Depends(services)
) -> Response:
    """Send a finished delivery again (the same message id), after the earlier ones of its process."""
    return reply(svc.run(hooks.replay_delivery, who.team_id, webhookId, deliveryId), status=202)


@router.post(WEBHOOK + "/replay-failed", status_code=202, responses=documented(Doc, 202, 409))
def replay_failed(
    webhookId: str,
    body: ReplayFailed | None = None,
    who: Caller = Depends(admin),
    svc: Services = Depends(services),
) -> Response:
    """Send the subscription's failed deliveries again, in their order (``since``: those made from then)."""
    return reply(svc.run(hooks.replay_failed, who.team_id, webhookId, body or ReplayFailed()), status=202)
