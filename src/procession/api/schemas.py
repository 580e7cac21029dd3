"""Reply shapes, for the OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ProcessOut(BaseModel):
    id: str
    team: str
    procedure: str
    createdBy: str | None
    assignedTo: str | None
    belongsTo: str | None
    entity: str | None
    record: str | None
    status: str
    state: str | None
    data: dict[str, Any]
    derivedData: dict[str, Any]
    nextActionAt: int | None
    completedAt: int | None
    primaryBooking: str | None
    cancelledAt: int | None
    parentProcedure: str | None
    parentProcess: str | None
    firstAssignedTo: str | None
    firstAssignedAt: int | None
    lastAssignedAt: int | None
    createdAt: int
    updatedAt: int
    isDeleted: bool
    version: int


class RecordOut(BaseModel):
    id: str
    entity: str
    data: dict[str, Any]
    createdAt: int
    updatedAt: int


class FileOut(BaseModel):
    id: str
    filename: str
    filetype: str
    size: int
    createdAt: int


class ConfigOut(BaseModel):
    procedures: list[dict[str, Any]]
    entities: list[dict[str, Any]]
    attributeTypes: list[str]
    attributes: list[dict[str, Any]]
    derivedAttributes: list[dict[str, Any]]
    pods: list[dict[str, Any]]
    users: list[dict[str, Any]]
    roles: list[str]


class RequirementOut(BaseModel):
    name: str
    use: str  # gate or move
    condition: str
    state: str | None = None
    status: str | None = None
    message: str | None = None
    met: bool
    reads: list[str]


class RequirementsOut(BaseModel):
    requirements: list[RequirementOut]
    blockedStates: dict[str, list[str]]  # state shortId -> the unmet gates of entering it
    blockedStatuses: dict[str, list[str]]
    allowedStates: list[str]  # where the state graph lets it move from here


class EventOut(BaseModel):
    id: int
    type: str
    actor: str | None
    actorUsername: str | None
    createdAt: int
    process: ProcessOut | None = None
    changes: dict[str, dict[str, Any]] | None = None
