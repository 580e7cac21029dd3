"""What callers ask for: validated shapes shared by the API, the worker and the CLI.

Booleans and integers are strict (pydantic's lax mode would take ``false`` for 0, ``1`` for ``true`` and
``"1"`` for 1): a boolean field takes ``true``/``false`` only, an integer field a JSON number without a
fraction (``10`` or ``10.0``, as JSON Schema's ``integer``), never a boolean or a string. Numeric strings are
accepted where the specification shows them: epoch-millisecond times (``nextActionAt``) and attribute values
in ``data`` (each checked by its attribute type)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from procession.domain.process import Status
from procession.domain.text import check_encodable


def _a_number(value: Any) -> Any:
    if isinstance(value, bool | str | bytes):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


Integer = Annotated[int, BeforeValidator(_a_number)]  # a JSON number without a fraction; not true, not "1"

LAST_EPOCH_MS = 253402300799999  # the last millisecond of year 9999 (``domain.attributes.epoch_ms``)

# a number (a whole one: JSON Schema's integer) or a numeric string, never a boolean: checked by ``epoch_ms``
# with the other fields' values (``resolve_change``), where a bulk entry and an automation's step meet the
# same rule, as one error naming the field
EpochMs = Annotated[
    Any,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": LAST_EPOCH_MS},
                {"type": "string", "pattern": r"^\s*[0-9]+\s*$"},
                {"type": "null"},
            ]
        }
    ),
]


# checked with the other fields' values (``resolve_change``), so that a bad one is reported with the rest
ProcessStatus = Annotated[
    Any,
    WithJsonSchema({"anyOf": [{"type": "string", "enum": [s.value for s in Status]}, {"type": "null"}]}),
]


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
    status: ProcessStatus = None
    state: str | None = Field(default=None, description="state shortId")
    nextActionAt: EpochMs = Field(default=None, description="epoch ms, number or numeric string")
    assignedTo: str | None = Field(default=None, description="user id or username")
    belongsTo: str | None = Field(default=None, description="pod id or shortId")
    parentProcess: str | None = Field(default=None, description="id of a process of the parent procedure")


class CreateProcess(ProcessFields):
    record: RecordInput | None = None


class UpdateProcess(ProcessFields):
    """Only the fields sent change; ``data`` merges by attribute (``null`` clears one)."""

    isDeleted: StrictBool | None = None
    primaryBooking: str | None = None
    version: Integer | None = Field(default=None, description="the version read: a 409 if it changed since")


class ListProcesses(Command):
    where: dict[str, Any] = Field(default_factory=dict, description="root fields and attribute shortIds")
    skip: Integer = Field(default=0, ge=0, le=100_000)
    limit: Integer = Field(default=10, ge=1, le=100)
    sort: list[Any] = Field(default_factory=list, description='[{"field": name, "dir": "asc"|"desc"}]')
    cursor: str | None = Field(default=None, description="_meta.nextCursor of the previous page")
    includeDeleted: StrictBool = False
    q: str | None = Field(
        default=None,
        max_length=500,
        description="words, each of which the process's text values or its record's must hold (whole words, "
        "any case)",
    )


class ListRecords(Command):
    where: dict[str, Any] = Field(
        default_factory=dict, description="id, createdAt, updatedAt, attribute shortIds"
    )
    skip: Integer = Field(default=0, ge=0, le=100_000)
    limit: Integer = Field(default=10, ge=1, le=100)
    sort: list[Any] = Field(default_factory=list, description='[{"field": name, "dir": "asc"|"desc"}]')
    cursor: str | None = Field(default=None, description="_meta.nextCursor of the previous page")


class RecordProcesses(Command):
    skip: Integer = Field(default=0, ge=0, le=100_000)
    limit: Integer = Field(default=10, ge=1, le=100)
    cursor: str | None = Field(default=None, description="_meta.nextCursor of the previous page")


class UpdateRecord(Command):
    data: dict[str, Any] = Field(
        description="attribute shortId -> value; only those sent change; null clears"
    )


class ExportProcesses(Command):
    """A list query without paging: every process it finds, in its order."""

    where: dict[str, Any] = Field(default_factory=dict, description="as the list's")
    sort: list[Any] = Field(default_factory=list, description="as the list's (default: updatedAt descending)")
    includeDeleted: StrictBool = False
    format: Literal["csv", "ndjson"] | None = Field(
        default=None,
        description="csv or ndjson; when absent, as the Accept header asks (text/csv by default)",
    )


class AttributeInput(Command):
    id: str | None = Field(
        default=None, description="keep an existing attribute (allows renaming its shortId)"
    )
    shortId: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,99}$")
    label: str = ""
    type: str
    required: StrictBool = False
    options: list[Any] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)
    formula: str | None = None
    indexed: StrictBool = Field(
        default=False,
        description="filters and sorts on it use an index of its own, built in the background "
        "(procedures only; the procedure's ``indexes`` tell when it is ready)",
    )


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
    requirements: list[dict[str, Any]] | None = Field(
        default=None,
        description="[{name, use: gate|move, condition (CEL), state, status, message}]; omitted: kept as they are",
    )
    version: Integer | None = Field(
        default=None, ge=1, description="on update: the version read (409 if stale)"
    )


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
