"""How a process is shown: shortIds for the external API, ids for the internal one."""

from __future__ import annotations

from typing import Any

from procession.domain.procedure import Procedure
from procession.domain.process import Process

FIELD_NAMES = {
    "data": "data",
    "derivedData": "derivedData",
    "state": "state",
    "status": "status",
    "assigned_to": "assignedTo",
    "belongs_to": "belongsTo",
    "next_action_at": "nextActionAt",
    "parent_process": "parentProcess",
    "primary_booking": "primaryBooking",
    "is_deleted": "isDeleted",
    "record": "record",
    "entity": "entity",
}


def process_view(process: Process, procedure: Procedure, *, external: bool = True) -> dict[str, Any]:
    """Every field of the specification, camelCase."""
    p = process
    return {
        "id": p.id,
        "team": p.team,
        "procedure": p.procedure,
        "createdBy": p.created_by,
        "assignedTo": p.assigned_to,
        "belongsTo": p.belongs_to,
        "entity": p.entity,
        "record": p.record,
        "status": p.status,
        "state": procedure.state_short(p.state) if external else p.state,
        "data": procedure.to_short(p.data) if external else p.data,
        "derivedData": procedure.to_short(p.derived_data) if external else p.derived_data,
        "nextActionAt": p.next_action_at,
        "completedAt": p.completed_at,
        "primaryBooking": p.primary_booking,
        "cancelledAt": p.cancelled_at,
        "parentProcedure": p.parent_procedure,
        "parentProcess": p.parent_process,
        "firstAssignedTo": p.first_assigned_to,
        "firstAssignedAt": p.first_assigned_at,
        "lastAssignedAt": p.last_assigned_at,
        "createdAt": p.created_at,
        "updatedAt": p.updated_at,
        "isDeleted": p.is_deleted,
        "version": p.version,
    }
