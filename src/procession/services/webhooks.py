"""Webhook subscription use cases: subscribe an endpoint to event types, change or remove a subscription,
follow its deliveries with their attempts, and send failed deliveries again.

The signing secret is made here and shown once, in the reply to the create (as an API key is); no other
reply and no log line carries it. A receiver that lost it needs a new subscription.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from pydantic import Field, StrictBool, StrictFloat, WithJsonSchema

from procession.connectors.outbound import check_url
from procession.connectors.webhooks import new_secret
from procession.domain.clock import new_id, now_ms
from procession.domain.errors import Conflict, FieldError, Invalid, NotFound
from procession.domain.webhooks import EVENT_TYPES, unknown_types
from procession.engine.webhooks import KIND, disable
from procession.services.commands import Command, Integer
from procession.store.repositories.deliveries import FAILED, SUCCEEDED, Delivery
from procession.store.repositories.webhooks import Webhook
from procession.store.tasks import NewTask
from procession.store.uow import UnitOfWork, UnitsOfWork

DEFAULT_TIMEOUT_S = 10.0


class WebhookRetry(Command):
    """How a delivery that failed for a passing reason is tried again: after ``backoffSeconds`` doubling (up
    to an hour between two attempts), until it succeeds, the subscription is disabled, or ``maxAttempts``."""

    maxAttempts: Integer | None = Field(default=None, ge=1, le=10_000, description="none: no limit")
    backoffSeconds: StrictFloat = Field(default=5, ge=0, le=3600)


# one of ``EVENT_TYPES``: listed in the document, checked by ``_check`` (a 422 naming the position)
EventType = Annotated[str, WithJsonSchema({"type": "string", "enum": list(EVENT_TYPES)})]


class WebhookInput(Command):
    """A subscription: the endpoint's ``url`` and the ``eventTypes`` delivered to it."""

    url: str = Field(min_length=1, max_length=2000)
    eventTypes: list[EventType] = Field(
        min_length=1, max_length=len(EVENT_TYPES), description=", ".join(EVENT_TYPES)
    )
    description: str = Field(default="", max_length=500)
    enabled: StrictBool = True
    timeoutSeconds: StrictFloat = Field(default=DEFAULT_TIMEOUT_S, gt=0, le=30)
    retry: WebhookRetry | None = None


class WebhookUpdate(Command):
    """A subscription's fields to change (the others stay); ``enabled: true`` enables a disabled one."""

    url: str | None = Field(default=None, min_length=1, max_length=2000)
    eventTypes: list[EventType] | None = Field(default=None, min_length=1, max_length=len(EVENT_TYPES))
    description: str | None = Field(default=None, max_length=500)
    enabled: StrictBool | None = None
    timeoutSeconds: StrictFloat | None = Field(default=None, gt=0, le=30)
    retry: WebhookRetry | None = None
    version: Integer | None = Field(default=None, ge=1, description="the version read; 409 if it changed")


class ReplayFailed(Command):
    since: Integer | None = Field(
        default=None, ge=0, lt=2**63, description="only the deliveries made at or after this (epoch ms)"
    )


def create_webhook(uows: UnitsOfWork, team_id: str, cmd: WebhookInput) -> dict[str, Any]:
    """A new subscription; its signing secret is in this reply, and in no other."""
    _check(cmd.url, cmd.eventTypes)
    now, secret, retry, webhook_id = now_ms(), new_secret(), cmd.retry or WebhookRetry(), new_id()
    row = {
        "id": webhook_id, "url": cmd.url, "description": cmd.description, "event_types": _types(cmd.eventTypes),
        "secret": secret, "enabled": cmd.enabled, "timeout_ms": int(cmd.timeoutSeconds * 1000),
        "max_attempts": retry.maxAttempts, "backoff_ms": int(retry.backoffSeconds * 1000),
        "failing_since": None, "disabled_at": None if cmd.enabled else now, "disabled_reason": None,
        "version": 1, "created_at": now, "updated_at": now,
    }  # fmt: skip
    with uows.write(team_id) as uow:
        uow.webhooks.add(row)
        created = _webhook(uow, webhook_id).public()
        uow.commit()
    return created | {"secret": secret}


def list_webhooks(uows: UnitsOfWork, team_id: str) -> list[dict[str, Any]]:
    with uows.read(team_id) as uow:
        return [w.public() for w in uow.webhooks.all()]


def get_webhook(uows: UnitsOfWork, team_id: str, webhook_id: str) -> dict[str, Any]:
    with uows.read(team_id) as uow:
        return _webhook(uow, webhook_id).public()


def update_webhook(uows: UnitsOfWork, team_id: str, webhook_id: str, cmd: WebhookUpdate) -> dict[str, Any]:
    """Change the fields sent. Disabling gives up its unfinished deliveries (``replay-failed`` sends them
    once it is enabled again); enabling starts it afresh, not failing."""
    _check(cmd.url, cmd.eventTypes)
    with uows.write(team_id) as uow:
        hook = _webhook(uow, webhook_id, for_update=True)
        if cmd.version is not None and cmd.version != hook.version:
            raise Conflict(f"the webhook is at version {hook.version}", field="version", code="stale_version")
        now = now_ms()
        values: dict[str, Any] = {"version": hook.version + 1, "updated_at": now}
        for column, value in (
            ("url", cmd.url),
            ("event_types", _types(cmd.eventTypes) if cmd.eventTypes else None),
            ("description", cmd.description),
            ("timeout_ms", int(cmd.timeoutSeconds * 1000) if cmd.timeoutSeconds else None),
        ):
            if value is not None:  # not sent (or null): left as it is
                values[column] = value
        if cmd.retry is not None:
            values |= {
                "max_attempts": cmd.retry.maxAttempts,
                "backoff_ms": int(cmd.retry.backoffSeconds * 1000),
            }
        if cmd.enabled is True and not hook.enabled:
            values |= {"enabled": True, "failing_since": None, "disabled_at": None, "disabled_reason": None}
        uow.webhooks.update(webhook_id, values)
        if cmd.enabled is False and hook.enabled:
            disable(uow, hook, now, None)
        updated = _webhook(uow, webhook_id).public()
        uow.commit()
    return updated


def delete_webhook(uows: UnitsOfWork, team_id: str, webhook_id: str) -> dict[str, Any]:
    """Remove a subscription with its deliveries: nothing more is sent to it."""
    with uows.write(team_id) as uow:
        _webhook(uow, webhook_id, for_update=True)
        uow.webhooks.delete(webhook_id)
        uow.commit()
    return {"id": webhook_id, "deleted": True}


def list_deliveries(
    uows: UnitsOfWork,
    team_id: str,
    webhook_id: str,
    *,
    status: str | None = None,
    before: int | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """A subscription's deliveries, newest first, each with its attempts."""
    with uows.read(team_id) as uow:
        _webhook(uow, webhook_id)
        found = uow.deliveries.of_webhook(webhook_id, status=status, before_id=before, limit=limit)
        return _shown(uow, found)


def get_delivery(uows: UnitsOfWork, team_id: str, webhook_id: str, delivery_id: int) -> dict[str, Any]:
    """A delivery with its message (the body sent) and its attempts."""
    with uows.read(team_id) as uow:
        delivery = _delivery(uow, webhook_id, delivery_id)
        return _shown(uow, [delivery])[0] | {"body": delivery.body}


def replay_delivery(uows: UnitsOfWork, team_id: str, webhook_id: str, delivery_id: int) -> dict[str, Any]:
    """Send a finished delivery again, as it was (the same message id: a receiver that has it drops it)."""
    with uows.write(team_id) as uow:
        hook = _enabled(uow, webhook_id)
        delivery = _delivery(uow, webhook_id, delivery_id, for_update=True)
        if delivery.status not in (SUCCEEDED, FAILED):
            raise Conflict(
                f"delivery {delivery_id} is {delivery.status}: it is being sent", code="unfinished"
            )
        _restart(uow, hook, ids=[delivery.id], since=None, statuses=(SUCCEEDED, FAILED))
        uow.commit()
    return get_delivery(uows, team_id, webhook_id, delivery_id)


def replay_failed(uows: UnitsOfWork, team_id: str, webhook_id: str, cmd: ReplayFailed) -> dict[str, Any]:
    """Send a subscription's failed deliveries again (those made ``since``, if given), in their order."""
    with uows.write(team_id) as uow:
        hook = _enabled(uow, webhook_id)
        replayed = _restart(uow, hook, ids=None, since=cmd.since)
        uow.commit()
    return {"id": webhook_id, "replayed": replayed}


def _restart(
    uow: UnitOfWork,
    hook: Webhook,
    *,
    ids: list[int] | None,
    since: int | None,
    statuses: tuple[str, ...] = (FAILED,),
) -> int:
    now, ref = now_ms(), uuid.uuid4().hex
    count = uow.deliveries.restart(hook.id, ids=ids, since=since, ref=ref, now=now, statuses=statuses)
    if count:
        uow.tasks.add(KIND, [NewTask(ref)], now=now)
    return count


def _check(url: str | None, event_types: list[str] | None) -> None:
    errors = []
    if url is not None:
        try:
            check_url(url)
        except ValueError as e:
            errors.append(FieldError("invalid_url", str(e), "url"))
    for n, unknown in unknown_types(event_types or []):
        message = f"no event is called {unknown!r}: one of {', '.join(EVENT_TYPES)}"
        errors.append(FieldError("unknown_event_type", message, f"eventTypes.{n}"))
    if errors:
        raise Invalid(errors)


def _types(event_types: list[str]) -> list[str]:
    return list(dict.fromkeys(event_types))


def _webhook(uow: UnitOfWork, webhook_id: str, *, for_update: bool = False) -> Webhook:
    found = uow.webhooks.get(webhook_id, for_update=for_update)
    if found is None:
        raise NotFound(f"no webhook {webhook_id!r}")
    return found


def _enabled(uow: UnitOfWork, webhook_id: str) -> Webhook:
    hook = _webhook(uow, webhook_id, for_update=True)
    if not hook.enabled:
        raise Conflict("the webhook is disabled: enable it first", code="webhook_disabled")
    return hook


def _delivery(uow: UnitOfWork, webhook_id: str, delivery_id: int, *, for_update: bool = False) -> Delivery:
    _webhook(uow, webhook_id)
    found = uow.deliveries.get(delivery_id, for_update=for_update)
    if found is None or found.webhook_id != webhook_id:
        raise NotFound(f"webhook {webhook_id!r} has no delivery {delivery_id}")
    return found


def _shown(uow: UnitOfWork, deliveries: list[Delivery]) -> list[dict[str, Any]]:
    attempts = uow.deliveries.attempts([d.id for d in deliveries])
    return [d.public() | {"attempts": attempts.get(d.id, [])} for d in deliveries]
