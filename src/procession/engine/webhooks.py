"""Webhook deliveries registered where their events become true, in the same transaction.

*Process events* are a follow-up of the single save path (``register_deliveries``, beside
``registration.register_runs``): a rolled-back save delivers nothing, a committed one always does. *A run
failed* is registered where a run is recorded FAILED (``engine.runs``), *a job finished* where a job's last
part is counted or it is aborted, and *a subscription disabled* where it is disabled (``disable``).

Each delivery is one event for one subscription, its message (``domain.webhooks.message``) written now: the
process as that save left it, so deliveries sent after an outage still tell what happened, in order. A
delivery names its event once (``event_key``): a second for the same event and subscription cannot exist.
The task of kind ``webhook.deliveries`` that sends them (``engine.deliveries``) is added with them.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from procession.domain.clock import now_ms
from procession.domain.procedure import Procedure
from procession.domain.process import Event
from procession.domain.webhooks import (
    JOB_ENDS,
    JOB_FINISHED,
    RUN_FAILED,
    WEBHOOK_DISABLED,
    Subscription,
    message,
    message_id,
    wanting,
)
from procession.services.views import FIELD_NAMES, process_view
from procession.store.outbox import Saves
from procession.store.repositories.deliveries import PENDING
from procession.store.repositories.runs import FAILED, Run
from procession.store.repositories.webhooks import Webhook
from procession.store.tasks import NewTask
from procession.store.uow import UnitOfWork

KIND = "webhook.deliveries"  # the kind of task that sends them (``engine.deliveries``)
HEADS = ("process.created", "process.updated")  # the first event of each save
DISABLED = "the subscription was disabled"


def register_deliveries(uow: UnitOfWork, saves: list[Saves]) -> None:
    """The follow-up: a delivery per subscription that wants each event of the saves, and a task for them."""
    subscriptions = uow.webhooks.subscribed()
    if not subscriptions:
        return
    now, rows = now_ms(), []
    for s in saves:
        heads = Counter(pid for pid, e in s.events if e.type in HEADS)
        for pid, event in s.events:
            if event.type in HEADS:
                heads[pid] -= 1
            wanted = wanting(subscriptions, event.type)
            if not wanted:
                continue
            process = s.processes[pid]
            version = process.version - heads[pid]  # the version this event's save made
            data = {
                "event": event_view(s.procedure, event, version, s.actor),
                "process": process_view(process, s.procedure),
            }
            text = message(event.type, s.now, data)
            rows += [new_delivery(w, pid, f"v{version}:{event.type}", event.type, text, now) for w in wanted]
    add_deliveries(uow, rows, now)


def runs_failed(uow: UnitOfWork, runs: list[Run], now: int) -> None:
    """Deliveries of ``run.failed`` for the runs among these that failed (in their process's order)."""
    failed = [r for r in runs if r.status == FAILED]
    wanted = _wanted(uow, RUN_FAILED) if failed else []
    rows = [
        new_delivery(w, r.process_id, f"r{r.id}@{now}", RUN_FAILED, message(RUN_FAILED, now, _run(r)), now)
        for r in failed
        for w in wanted
    ]
    add_deliveries(uow, rows, now)


def job_counted(uow: UnitOfWork, job_id: str, status: str, now: int) -> None:
    """A part of a job was counted, leaving it ``status``: deliveries of ``job.finished`` if that was its
    last part (an aborted job was told of when it was aborted)."""
    if status in JOB_ENDS:
        job_finished(uow, job_id, now)


def job_finished(uow: UnitOfWork, job_id: str, now: int) -> None:
    """Deliveries of ``job.finished`` for a job that just finished (or was aborted)."""
    wanted = _wanted(uow, JOB_FINISHED)
    job = uow.jobs.get(job_id) if wanted else None
    if job is None:
        return
    data = {
        "job": {
            "id": job.id,
            "procedureId": job.procedure_id,
            "kind": job.kind,
            "status": job.status,
            "total": job.total,
            "counts": job.counts,
            "createdBy": job.created_by,
            "createdAt": job.created_at,
            "finishedAt": job.finished_at,
        }
    }
    text = message(JOB_FINISHED, now, data)
    key = f"job:{job.status}@{now}"
    add_deliveries(uow, [new_delivery(w, job.id, key, JOB_FINISHED, text, now) for w in wanted], now)


def disable(uow: UnitOfWork, webhook: Webhook, now: int, reason: str | None) -> None:
    """Disable a subscription: its unfinished deliveries are given up (a replay sends them again once it is
    enabled), and, when it failed for too long (``reason``), the team is told: an event, and a delivery of
    ``webhook.disabled`` to the subscriptions that want it."""
    uow.webhooks.update(webhook.id, {"enabled": False, "disabled_at": now, "disabled_reason": reason})
    uow.deliveries.fail_unfinished(webhook.id, now, DISABLED)
    if reason is None:  # by an admin
        return
    data = {"webhook": webhook.public() | {"enabled": False, "disabledAt": now, "disabledReason": reason}}
    uow.webhooks.record_event(webhook.id, WEBHOOK_DISABLED, data, now)
    wanted = [w for w in _wanted(uow, WEBHOOK_DISABLED) if w.id != webhook.id]
    text = message(WEBHOOK_DISABLED, now, data)
    key = f"disabled@{now}"
    add_deliveries(uow, [new_delivery(w, webhook.id, key, WEBHOOK_DISABLED, text, now) for w in wanted], now)


def new_delivery(
    subscription: Subscription, subject: str, key: str, event_type: str, body: str, now: int
) -> dict[str, Any]:
    return {
        "webhook_id": subscription.id,
        "subject": subject,
        "event_key": key,
        "event_type": event_type,
        "message_id": message_id(),
        "body": body,
        "status": PENDING,
        "attempts": 0,
        "error": None,
        "wake_at": now,
        "lease_until": None,
        "held_by": None,
        "task_ref": "",
        "created_at": now,
        "finished_at": None,
    }


def add_deliveries(uow: UnitOfWork, rows: list[dict[str, Any]], now: int) -> None:
    """Write deliveries and the task that sends them (woken once committed)."""
    if not rows:
        return
    ref = uuid.uuid4().hex
    for row in rows:
        row["task_ref"] = ref
    uow.deliveries.add(rows)
    uow.tasks.add(KIND, [NewTask(ref)], now=now)


def event_view(procedure: Procedure, event: Event, version: int, actor: str | None) -> dict[str, Any]:
    """An event as a delivery shows it: by shortIds, what changed (old and new values) or what moved."""
    out: dict[str, Any] = {
        "type": event.type,
        "version": version,
        "actor": actor,
        "procedure": procedure.short_id,
    }
    payload = event.payload

    def show(name: str, value: Any) -> Any:
        return procedure.state_short(value) if name == "state" else value

    if "changes" in payload:
        out["changes"] = {
            _field_name(procedure, k): {"old": show(k, old), "new": show(k, new)}
            for k, (old, new) in payload["changes"].items()
        }
    if "from" in payload:
        kind = event.type.removeprefix("process.").removesuffix("_changed")
        out["from"], out["to"] = show(kind, payload["from"]), show(kind, payload["to"])
    return out


def _field_name(procedure: Procedure, key: str) -> str:
    if "." in key:
        column, attr_id = key.split(".", 1)
        attr = procedure.by_id.get(attr_id)
        return f"{FIELD_NAMES.get(column, column)}.{attr.short_id if attr else attr_id}"
    return FIELD_NAMES.get(key, key)


def _wanted(uow: UnitOfWork, event_type: str) -> list[Subscription]:
    return wanting(uow.webhooks.subscribed(), event_type)


def _run(run: Run) -> dict[str, Any]:
    shown = run.public()
    return {"run": {k: shown[k] for k in _RUN_FIELDS}}


_RUN_FIELDS = (
    "id",
    "automationId",
    "version",
    "procedureId",
    "processId",
    "event",
    "status",
    "step",
    "error",
    "createdAt",
    "finishedAt",
)
