"""What callers ask for: validated shapes shared by the API, the worker and the CLI."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from procession.domain.process import Status
from procession.domain.text import check_encodable


class Command(BaseModel):
    """Every request body's model: unknown fields refused, and text that UTF-8 cannot encode (a lone
    surrogate, anywhere in the body) refused before any field is read, naming where it is."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _encodable(cls, data: Any) -> Any:
        check_encodable(data)  # raises Invalid, which pydantic lets through: a 422 naming the field
        return data


class RecordInput(Command):
    """The record a process is created for: an existing record's id, or data matched by primary key."""

    id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class ProcessFields(Command):
    """Fields a client may write on a process (shortIds for attributes and states)."""

    data: dict[str, Any] = Field(default_factory=dict, description="attribute shortId -> value")
    status: Status | None = None
    state: str | None = Field(default=None, description="state shortId")
    nextActionAt: int | str | None = Field(default=None, description="epoch ms, number or numeric string")
    assignedTo: str | None = Field(default=None, description="user id or username")
    belongsTo: str | None = Field(default=None, description="pod id or shortId")
    parentProcess: str | None = Field(default=None, description="id of a process of the parent procedure")


class CreateProcess(ProcessFields):
    record: RecordInput | None = None


class UpdateProcess(ProcessFields):
    """Only the fields sent change; ``data`` merges by attribute (``null`` clears one)."""

    isDeleted: bool | None = None
    primaryBooking: str | None = None
    version: int | None = Field(default=None, description="the version read: a 409 if it changed since")


class ListProcesses(Command):
    where: dict[str, Any] = Field(default_factory=dict, description="root fields and attribute shortIds")
    skip: int = Field(default=0, ge=0, le=100_000)
    limit: int = Field(default=10, ge=1, le=100)
    sort: list[Any] = Field(default_factory=list, description='[{"field": name, "dir": "asc"|"desc"}]')
    cursor: str | None = Field(default=None, description="_meta.nextCursor of the previous page")
    includeDeleted: bool = False


class AttributeInput(Command):
    id: str | None = Field(
        default=None, description="keep an existing attribute (allows renaming its shortId)"
    )
    shortId: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,99}$")
    label: str = ""
    type: str
    required: bool = False
    options: list[Any] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)
    formula: str | None = None


class StateInput(Command):
    id: str | None = None
    shortId: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,99}$")
    label: str = ""


class EntityInput(Command):
    shortId: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,99}$")
    label: str = ""
    attributes: list[AttributeInput]
    primaryKey: str | None = Field(default=None, description="attribute shortId")


class ProcedureInput(Command):
    shortId: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,99}$")
    label: str = ""
    attributes: list[AttributeInput] = Field(default_factory=list)
    primaryKey: str | None = Field(default=None, description="attribute shortId")
    states: list[StateInput] = Field(min_length=1)
    initialState: str | None = Field(default=None, description="state shortId; the first state when omitted")
    transitions: dict[str, list[str]] = Field(default_factory=dict, description="state shortId -> shortIds")
    entity: str | None = Field(default=None, description="entity shortId or id")
    parentProcedure: str | None = Field(default=None, description="procedure shortId or id")
    version: int | None = Field(default=None, description="on update: the version read (409 if stale)")


class UserInput(Command):
    username: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,99}$")
    name: str = ""
    role: str = Field(default="member", pattern="^(admin|member)$")
    id: str | None = None


class PodInput(Command):
    shortId: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,99}$")
    name: str = ""
    members: list[str] = Field(default_factory=list, description="user ids or usernames")


class BulkProcesses(Command):
    """Items are checked one by one: a bad item becomes an INVALID entry, never a failed request."""

    processes: list[Any] = Field(min_length=1, max_length=100_000)
