"""A process and the one way it changes: ``apply(change)`` validates, mutates and returns its events."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from procession.domain.errors import Invalid
from procession.domain.procedure import Procedure
from procession.domain.requirements import settle


class Status(StrEnum):
    OPEN = "OPEN"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"


class _Unset:
    """Marks a field a change leaves alone (``None`` means "clear it")."""

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()


@dataclass(frozen=True, slots=True)
class Event:
    """An immutable fact about a process, written in the transaction of the change it records."""

    type: str
    payload: dict[str, Any]


@dataclass(slots=True)
class ProcessChange:
    """What a create or an update asks for, already resolved to ids and normalised values."""

    data: dict[str, Any] = field(default_factory=dict)  # attribute id -> value (None removes)
    state: Any = UNSET
    status: Any = UNSET
    assigned_to: Any = UNSET
    belongs_to: Any = UNSET
    next_action_at: Any = UNSET
    parent_process: Any = UNSET
    primary_booking: Any = UNSET
    is_deleted: Any = UNSET
    record: Any = UNSET
    entity: Any = UNSET


@dataclass(slots=True)
class Process:
    id: str
    team: str
    procedure: str
    created_by: str | None
    status: str
    state: str | None
    created_at: int
    updated_at: int
    data: dict[str, Any] = field(default_factory=dict)
    derived_data: dict[str, Any] = field(default_factory=dict)
    assigned_to: str | None = None
    belongs_to: str | None = None
    entity: str | None = None
    record: str | None = None
    next_action_at: int | None = None
    completed_at: int | None = None
    cancelled_at: int | None = None
    primary_booking: str | None = None
    parent_procedure: str | None = None
    parent_process: str | None = None
    first_assigned_to: str | None = None
    first_assigned_at: int | None = None
    last_assigned_at: int | None = None
    is_deleted: bool = False
    version: int = 0

    @classmethod
    def create(
        cls,
        procedure: Procedure,
        change: ProcessChange,
        *,
        id: str,
        team: str,
        created_by: str | None,
        now: int,
        record: dict[str, Any] | None = None,
    ) -> tuple[Process, list[Event]]:
        """A new process of ``procedure``: any state may be given directly; the graph applies afterwards."""
        process = cls(
            id=id,
            team=team,
            procedure=procedure.id,
            created_by=created_by,
            status=Status.OPEN.value,
            state=procedure.initial_state,
            created_at=now,
            updated_at=now,
            parent_procedure=procedure.parent,
        )
        events = process.apply(procedure, change, now=now, enforce_graph=False, record=record)
        process.updated_at, process.version = now, 1
        created = Event("process.created", {"snapshot": process.snapshot()})
        return process, [created, *(e for e in events if e.type == "process.assigned")]

    def apply(
        self,
        procedure: Procedure,
        change: ProcessChange,
        *,
        now: int,
        enforce_graph: bool = True,
        record: dict[str, Any] | None = None,
    ) -> list[Event]:
        """Apply ``change`` and the procedure's requirements (``domain.requirements``; ``record``: the record's
        data by shortId, when they read it); return its events (``process.updated`` first; none if nothing
        changed), or raise ``Invalid``, changing nothing."""
        if change.state is not UNSET and enforce_graph and not procedure.can_move(self.state, change.state):
            raise Invalid.one(
                "transition_not_allowed",
                f"{procedure.short_id} cannot move from {procedure.state_short(self.state)} "
                f"to {procedure.state_short(change.state)}",
                "state",
            )
        before = self.snapshot() if procedure.requirements else None  # put back if a requirement refuses
        data = {**self.data}
        for key, value in change.data.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        missing = procedure.missing_required(data)
        if missing:
            raise Invalid(missing)

        changes: dict[str, list[Any]] = {}
        for key in change.data:
            if self.data.get(key) != data.get(key):
                changes[f"data.{key}"] = [self.data.get(key), data.get(key)]
        self.data = data
        self._set("state", change.state, changes)
        if self._set("status", change.status, changes):
            self.completed_at = now if self.status == Status.COMPLETED else None
            self.cancelled_at = now if self.status == Status.CANCELLED else None
        if self._set("assigned_to", change.assigned_to, changes) and self.assigned_to is not None:
            self.last_assigned_at = now
            if self.first_assigned_to is None:
                self.first_assigned_to, self.first_assigned_at = self.assigned_to, now
        for name in (
            "belongs_to",
            "next_action_at",
            "parent_process",
            "primary_booking",
            "is_deleted",
            "record",
            "entity",
        ):
            self._set(name, getattr(change, name), changes)
        derived = procedure.derive(
            self.data, previous=self.derived_data if self.version else None, changed=change.data
        )
        for key in derived.keys() | self.derived_data.keys():
            if self.derived_data.get(key) != derived.get(key):
                changes[f"derivedData.{key}"] = [self.derived_data.get(key), derived.get(key)]
        self.derived_data = derived
        moves: list[tuple[str, Any, Any, str | None]] = []
        if procedure.requirements:
            moves = self._requirements(procedure, changes, record, now, before)
        if not changes:
            return []
        self.updated_at, self.version = now, self.version + 1
        return self._events(changes, moves)

    def _requirements(
        self,
        procedure: Procedure,
        changes: dict[str, list[Any]],
        record: dict[str, Any] | None,
        now: int,
        before: dict[str, Any] | None,
    ) -> list[tuple[str, Any, Any, str | None]]:
        """Gates, then moves, then the gates of every save (``domain.requirements``); the moves made, as
        (field, from, to, requirement). On a refusal, the process is put back as it was (``before``)."""
        try:
            return settle(self, procedure, changes, record, now, new=not self.version)
        except Invalid:
            for name, value in (before or {}).items():
                setattr(self, name, value)
            raise

    def move(self, name: str, value: Any, changes: dict[str, list[Any]], now: int) -> None:
        """Set ``state`` or ``status`` for a requirement's move, folded into the save's ``changes``."""
        old = getattr(self, name)
        setattr(self, name, value)
        if name == "status":
            self.completed_at = now if value == Status.COMPLETED else None
            self.cancelled_at = now if value == Status.CANCELLED else None
        if name not in changes:
            changes[name] = [old, value]
        elif changes[name][0] == value:
            del changes[name]
        else:
            changes[name] = [changes[name][0], value]

    def variables(self, procedure: Procedure) -> dict[str, Any]:
        """The process as CEL sees it: data by shortId, state by shortId (and, added by who has read it, its
        record's data as ``record``)."""
        return {
            "id": self.id,
            "procedure": procedure.short_id,
            "data": procedure.to_short(self.data),
            "derivedData": procedure.to_short(self.derived_data),
            "state": procedure.state_short(self.state),
            "status": self.status,
            "assignedTo": self.assigned_to,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "nextActionAt": self.next_action_at,
            "parentProcess": self.parent_process,
            "version": self.version,
        }

    def _set(self, name: str, value: Any, changes: dict[str, list[Any]]) -> bool:
        old = getattr(self, name)
        if value is UNSET or value == old:
            return False
        setattr(self, name, value)
        changes[name] = [old, value]
        return True

    @staticmethod
    def fields_written(changes: Iterable[str]) -> set[str]:
        """The fields that changes set (keys of a ``process.updated`` event's ``changes``, of one save or of
        many): the ones a save must write. ``updated_at`` and ``version`` always; a status or an assignment
        brings its timestamps."""
        out = {"updated_at", "version"}
        for key in changes:
            name = _CHANGED_FIELD.get(key.split(".", 1)[0], key)
            out.add(name)
            out.update(_SET_WITH.get(name, ()))
        return out

    @staticmethod
    def _events(changes: dict[str, list[Any]], moves: list[tuple[str, Any, Any, str | None]]) -> list[Event]:
        """``process.updated`` with every change, then one event per state, status or assignee change: the
        save's own, then each requirement's move (naming it)."""
        events = [Event("process.updated", {"changes": changes})]
        for name, event in (
            ("state", "process.state_changed"),
            ("status", "process.status_changed"),
            ("assigned_to", "process.assigned"),
        ):
            hops = [m for m in moves if m[0] == name]
            if hops:
                if hops[0][3] is None:  # the save's own change came first
                    events.append(Event(event, {"from": hops[0][1], "to": hops[0][2]}))
                    hops = hops[1:]
                events.extend(Event(event, {"from": m[1], "to": m[2], "requirement": m[3]}) for m in hops)
            elif name in changes:
                events.append(Event(event, {"from": changes[name][0], "to": changes[name][1]}))
        if "is_deleted" in changes:
            events.append(Event("process.deleted" if changes["is_deleted"][1] else "process.restored", {}))
        return events

    def snapshot(self) -> dict[str, Any]:
        """Every field, as stored."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


_CHANGED_FIELD = {"data": "data", "derivedData": "derived_data"}  # "data.<id>" -> data, ...
_SET_WITH = {
    "status": ("completed_at", "cancelled_at"),
    "assigned_to": ("last_assigned_at", "first_assigned_to", "first_assigned_at"),
}
