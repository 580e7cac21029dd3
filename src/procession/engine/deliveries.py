"""Webhook deliveries on the task engine (kind ``webhook.deliveries``; registered by ``engine.webhooks``).

Deliveries go as automation runs do (``engine.runs``), with the same outbound calls and rules: a worker takes
a task's due deliveries in one short transaction (``hold``: each marked RUNNING with a lease, the task due
again when it ends), sends them together outside any transaction (``outside``: signed, each call cut at its
deadline, refused to private addresses), and records what happened in one transaction, for the deliveries it
still holds. A delivery waits while an earlier one of its subscription and subject (a process) is pending
or running, so a receiver gets a process's events in order. Connection failures, timeouts, 408/425/429 and
5xx are tried again after the subscription's back-off, doubling up to an hour, or the ``Retry-After`` asked
for; any other status gives the delivery up, as does its subscription's last attempt, if it has one. A
subscription whose endpoint has failed every attempt for ``disable_after`` is disabled (``webhooks.disable``).

A subscription is not an automation with one webhook step: runs of a process wait on each other across every
automation, so an endpoint down for days would hold back the process's automations; and events about jobs
are about no process. The engine, the calls, the signing and the retry rules are the same ones.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from procession import metrics
from procession.connectors.outbound import (
    Call,
    Outbound,
    Refused,
    Reply,
    Unreachable,
    retry_after_ms,
    transient,
)
from procession.connectors.webhooks import signed_headers
from procession.domain.clock import now_ms
from procession.domain.webhooks import iso
from procession.engine.steps import EXCERPT, retry_wait_ms
from procession.engine.tasks import Kind, take_due
from procession.engine.webhooks import KIND, disable
from procession.store.repositories.deliveries import FAILED, PENDING, SUCCEEDED, Delivery
from procession.store.repositories.webhooks import Webhook
from procession.store.tasks import WORKER, Task
from procession.store.uow import UnitOfWork, UnitsOfWork

log = logging.getLogger("procession.engine")
MAX_TAKE = 500  # deliveries one worker takes at once
MAX_WAIT_MS = 3600 * 1000  # between two attempts of a delivery, unless a Retry-After asks for longer
BLOCKED_MS = 30_000  # a task held back by an earlier delivery is woken when that one ends; this is a fallback


@dataclass
class Sending:
    """A delivery held by this worker, its subscription, and what its attempt came to."""

    delivery: Delivery
    webhook: Webhook
    attempt: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.delivery.status == SUCCEEDED


@dataclass
class Held:
    token: str
    sendings: list[Sending]


def plan(uow: UnitOfWork, task_ref: str, now: int) -> tuple[list[Delivery], int | None]:
    """The deliveries of a task that can go now, and when the task is due again for the others (None: none of
    it is left unfinished)."""
    deliveries = uow.deliveries.of_task(task_ref)
    if not deliveries:
        return [], None
    earliest = uow.deliveries.earliest_ahead(sorted({d.lane for d in deliveries}))
    return take_due(deliveries, earliest, lambda d: d.lane, now, limit=MAX_TAKE, blocked_ms=BLOCKED_MS)


class WebhookDeliveries:
    """The kind: calls go through ``outbound()`` (made when first needed)."""

    def __init__(
        self, outbound: Callable[[], Outbound], *, lease_seconds: float, disable_after_seconds: float
    ) -> None:
        self.outbound = outbound
        self.lease_ms = int(lease_seconds * 1000)  # a worker holds the deliveries it took this long
        self.disable_after_ms = int(disable_after_seconds * 1000)

    def kind(self) -> Kind:
        return Kind(KIND, run=_never, hold=self.hold, outside=self.outside, give_up=give_up, max_attempts=20)

    def hold(self, uow: UnitOfWork, task: Task) -> Held | None:
        now = now_ms()
        take, wake = plan(uow, task.ref, now)
        hooks = uow.webhooks.get_many(sorted({d.webhook_id for d in take}))
        gone = [d for d in take if d.webhook_id not in hooks or not hooks[d.webhook_id].enabled]
        if gone:  # disabled meanwhile: given up with the others of their subscription
            for webhook_id in {d.webhook_id for d in gone}:
                uow.deliveries.fail_unfinished(webhook_id, now, "the subscription was disabled")
            take = [d for d in take if d not in gone]
            wake = now if wake is None else min(wake, now)
        if not take:
            if wake is None:
                uow.tasks.close(task, now)
            else:
                uow.tasks.schedule(task.id, max(wake, now + 1))
            return None
        token = f"{WORKER}/{uuid.uuid4().hex[:12]}"
        uow.deliveries.hold([d.id for d in take], token=token, until=now + self.lease_ms)
        uow.tasks.schedule(task.id, min(wake or now + self.lease_ms, now + self.lease_ms))
        return Held(token, [Sending(d, hooks[d.webhook_id]) for d in take])

    def outside(self, uows: UnitsOfWork, task: Task, held: Held) -> None:
        outbound, sent = self.outbound(), []
        for s in held.sendings:
            started = now_ms()
            call, request = signed_call(s, started, cut_ms=self.lease_ms // 2)
            sent.append((s, started, request, outbound.submit(call)))
        for s, started, request, future in sent:
            try:
                reply: Any = future.result()
            except BaseException as e:  # Refused, Unreachable, or what went wrong
                reply = e
            judge(s, reply, started, now_ms(), request)
        self._record(uows, task, held)

    def _record(self, uows: UnitsOfWork, task: Task, held: Held) -> None:
        """What happened, in one transaction: attempts, each delivery's new state if it is still held, the
        subscriptions' health (one failing too long is disabled); then the task is due again, or done."""
        with uows.write(task.team_id) as uow:
            now = now_ms()
            sendings = held.sendings
            failing = sorted({s.webhook.id for s in sendings if not s.ok})
            uow.webhooks.lock(failing)  # those it may disable, before the deliveries that would give up
            mine = uow.deliveries.still_held([s.delivery.id for s in sendings], held.token)
            uow.deliveries.add_attempts([s.attempt for s in sendings])
            moved = [s.delivery for s in sendings if s.delivery.id in mine]
            uow.deliveries.update(
                [
                    {"b_id": d.id, "status": d.status, "attempts": d.attempts, "error": d.error,
                     "wake_at": d.wake_at, "finished_at": d.finished_at, "lease_until": None, "held_by": None}
                    for d in moved
                ]
            )  # fmt: skip
            ok = sorted({s.webhook.id for s in sendings if s.ok})
            uow.webhooks.recovered(ok)
            failing = sorted(set(failing) - set(ok))
            for webhook in uow.webhooks.failed(failing, now, longer_than_ms=self.disable_after_ms):
                since = webhook.failing_since or now
                reason = f"every attempt failed since {iso(since)} ({(now - since) / 1000:,.0f} s)"
                log.warning("webhook %s disabled: %s", webhook.id, reason)
                disable(uow, webhook, now, reason)
            done = sorted({d.lane for d in moved if d.finished_at is not None})
            for ref in uow.deliveries.later_tasks(done) - {task.ref}:
                uow.tasks.wake_ref(KIND, ref, now)
            _reschedule(uow, task, now)
            uow.commit()
        for s in sendings:
            metrics.DELIVERIES.labels(s.attempt["outcome"]).inc()
        log.debug("task %s: %d deliveries recorded", task.id, len(sendings))


def _reschedule(uow: UnitOfWork, task: Task, now: int) -> None:
    take, wake = plan(uow, task.ref, now)
    wake = now if take else wake
    if wake is None:
        uow.tasks.close(task, now)
    else:
        uow.tasks.schedule(task.id, wake)
        if wake <= now:
            uow.tasks.added.add((KIND, task.ref))


def signed_call(s: Sending, now: int, *, cut_ms: int) -> tuple[Call, dict[str, Any]]:
    """A delivery's call, signed for this attempt (its message id the same on every attempt), and how it is
    recorded: the URL and the message's id and timestamp, never the signature."""
    d, hook = s.delivery, s.webhook
    body = d.body.encode()
    headers = signed_headers(hook.secret, d.message_id, now // 1000, body)
    deadline = min(hook.timeout_ms, cut_ms) / 1000
    shown = {k: headers[k] for k in ("webhook-id", "webhook-timestamp")}
    return Call("POST", hook.url, headers, body, deadline), {
        "method": "POST",
        "url": hook.url,
        "headers": shown,
    }


def judge(s: Sending, reply: Reply | BaseException, started: int, now: int, request: dict[str, Any]) -> None:
    """An attempt's outcome, by the rules of automation steps' calls: what may pass is tried again later."""
    d, hook = s.delivery, s.webhook
    recorded: dict[str, Any] = {"request": request, "status_code": None, "excerpt": None}
    after: int | None = None
    if isinstance(reply, Refused):
        error, retry = f"refused: {reply}", False
    elif isinstance(reply, Unreachable):
        error, retry = ("no reply within the deadline" if reply.timed_out else f"unreachable: {reply}"), True
    elif isinstance(reply, BaseException):
        error, retry = f"{type(reply).__name__}: {reply}", False
    else:
        recorded |= {"status_code": reply.status, "excerpt": reply.body[:EXCERPT].decode("utf-8", "replace")}
        if 200 <= reply.status < 300:
            s.attempt = _attempt(d, "OK", started, now, None, recorded)
            d.status, d.error, d.finished_at = SUCCEEDED, None, now
            return
        error, retry = f"HTTP {reply.status}", transient(reply.status)
        after = retry_after_ms(reply.headers, now) if retry else None
        if not retry:
            error += " (expected 2xx)"
    if retry and (hook.max_attempts is None or d.attempts + 1 < hook.max_attempts):
        s.attempt = _attempt(d, "RETRY", started, now, error, recorded)
        d.wake_at = now + retry_wait_ms(hook.backoff_ms, d.attempts, after, cap_ms=MAX_WAIT_MS)
        d.status, d.error, d.attempts = PENDING, error[:2000], d.attempts + 1
        return
    if retry:
        error = f"{error} (attempt {d.attempts + 1} of {hook.max_attempts})"
    s.attempt = _attempt(d, FAILED, started, now, error, recorded)
    d.status, d.error, d.finished_at = FAILED, error[:2000], now


def _attempt(
    d: Delivery, outcome: str, started: int, now: int, error: str | None, recorded: dict[str, Any]
) -> dict[str, Any]:
    return {
        "delivery_id": d.id,
        "outcome": outcome,
        "error": error[:2000] if error else None,
        "started_at": started,
        "duration_ms": max(0, now - started),
        **recorded,
    }


def _never(uow: UnitOfWork, task: Task) -> None:
    raise AssertionError("webhook deliveries are held and sent outside a transaction")


def give_up(uow: UnitOfWork, task: Task, error: str) -> None:
    """The task failed every attempt (a fault of the worker, not of an endpoint): its deliveries fail with it,
    and the ones they held back go on."""
    now, deliveries = now_ms(), uow.deliveries.of_task(task.ref)
    uow.deliveries.update(
        [
            {"b_id": d.id, "status": FAILED, "error": f"could not be sent: {error}"[:2000], "finished_at": now,
             "held_by": None, "lease_until": None}
            for d in deliveries
        ]
    )  # fmt: skip
    for ref in uow.deliveries.later_tasks(sorted({d.lane for d in deliveries})) - {task.ref}:
        uow.tasks.wake_ref(KIND, ref, now)
