"""Webhook subscriptions: the events a team can subscribe an endpoint to, and the message each delivery
sends, shaped as Standard Webhooks recommends (``{"type", "timestamp", "data"}``): the same bytes on every
attempt, under one message id (``webhook-id``), so a receiver can drop repeats.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

PROCESS_EVENTS = (
    "process.created",
    "process.updated",
    "process.state_changed",
    "process.status_changed",
    "process.assigned",
    "process.deleted",
    "process.restored",
)
RUN_FAILED = "run.failed"  # an automation run ended FAILED
JOB_FINISHED = "job.finished"  # a background job ended COMPLETED, FAILED or ABORTED
WEBHOOK_DISABLED = "webhook.disabled"  # a subscription was disabled after failing for too long
EVENT_TYPES = (*PROCESS_EVENTS, RUN_FAILED, JOB_FINISHED, WEBHOOK_DISABLED)
JOB_ENDS = ("COMPLETED", "FAILED")  # where a job's last part leaves it (or ABORTED, by a person)


@dataclass(frozen=True)
class Subscription:
    """What matching an event needs of a subscription: its id and the event types it wants."""

    id: str
    event_types: frozenset[str]

    def wants(self, event_type: str) -> bool:
        return event_type in self.event_types


def wanting(subscriptions: list[Subscription], event_type: str) -> list[Subscription]:
    """The subscriptions an event of ``event_type`` is delivered to."""
    return [s for s in subscriptions if s.wants(event_type)]


def unknown_types(event_types: list[str]) -> list[tuple[int, str]]:
    """The (position, type) of the types no event has."""
    return [(n, e) for n, e in enumerate(event_types) if e not in EVENT_TYPES]


def message_id() -> str:
    """A delivery's message id (``webhook-id``): kept with it, the same on every attempt and every replay."""
    return f"msg_{uuid.uuid4().hex}"


def iso(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 in UTC (``2026-12-05T06:00:00.000Z``)."""
    at = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def message(event_type: str, at_ms: int, data: dict[str, Any]) -> str:
    """The body a delivery sends: the event's type, when it happened, and its data."""
    return orjson.dumps({"type": event_type, "timestamp": iso(at_ms), "data": data}).decode()
