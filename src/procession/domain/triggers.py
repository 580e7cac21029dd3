"""When an automation's trigger fires for a process's event, and what a run keeps of that event."""

from __future__ import annotations

from typing import Any

from procession.domain.attributes import epoch_ms
from procession.domain.automations import Trigger
from procession.domain.procedure import Procedure
from procession.domain.process import Event, Process


def fires(trigger: Trigger, event: Event, process: Process, procedure: Procedure) -> int | None:
    """When ``event`` makes the trigger fire: 0 for now, a time for a timed trigger; None if it does not."""
    kind, payload = trigger.type, event.payload
    created = event.type == "process.created"
    if kind == "created":
        return 0 if created else None
    if kind in ("state_reached", "status_reached"):
        name = kind.split("_")[0]
        wanted = trigger.state if name == "state" else trigger.status
        if created:
            return 0 if payload["snapshot"][name] == wanted else None
        return 0 if event.type == f"process.{name}_changed" and payload["to"] == wanted else None
    field = "next_action_at" if kind == "next_action_due" else f"data.{trigger.attribute}"
    if created:
        snapshot = payload["snapshot"]
        value = (
            snapshot["next_action_at"]
            if kind == "next_action_due"
            else snapshot["data"].get(trigger.attribute)
        )
    elif event.type == "process.updated" and field in payload["changes"]:
        value = payload["changes"][field][1]
    else:
        return None
    if value is None or (kind == "attribute_changed" and trigger.has_to and value != trigger.to):
        return None
    if kind == "attribute_changed":
        return 0
    return time_of(value) + trigger.offset_ms


def time_of(value: Any) -> int:
    """Epoch ms of a stored date or date-time value (a date: its midnight, UTC)."""
    return (
        value
        if isinstance(value, int)
        else epoch_ms(f"{value}T00:00:00Z" if len(str(value)) == 10 else value)
    )


def due_at(trigger: Trigger, process: Process) -> int | None:
    """When a timed trigger fires for the process as it is now."""
    if trigger.type == "next_action_due":
        value: Any = process.next_action_at
    else:
        value = process.data.get(trigger.attribute or "")
    return None if value is None else time_of(value) + trigger.offset_ms


def thin(event: Event, version: int) -> dict[str, Any]:
    """What a run keeps of its event (CEL's ``event``): its type, the version, and what moved."""
    out: dict[str, Any] = {"type": event.type, "version": version}
    if "from" in event.payload:
        out["from"], out["to"] = event.payload["from"], event.payload["to"]
    return out
