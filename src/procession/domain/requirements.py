"""Requirements: CEL conditions on a process that gate where it may go and move it when they hold.

A procedure's requirements are checked on every save, in the domain's one rule for changing a process
(``Process.apply``), so a create, an update, a bulk entry and an automation's step meet them alike:

1. **Gates** of what the save itself asks for: a requirement with ``use: gate`` and a ``state`` (or a
   ``status``) must hold when the save moves the process into that state (status). Unmet: the save is
   refused (``Invalid``), naming each unmet requirement and the fields it reads.
2. **Moves**, in the order they are defined: the first ``use: move`` requirement whose condition holds and
   whose target differs from where the process is, is allowed by the state graph and meets the target's
   gates, moves it (state and/or status); then the moves are looked at again from the first, up to
   ``MAX_MOVES`` hops. A move back to a state and status the save has already been in is a cycle: an error
   of the save, as is going past the bound.
3. **Gates of every save**: a gate with neither state nor status must hold after the moves.

A condition that cannot be computed (a value it reads is missing, a type mismatch) does not hold.
Conditions see what automations see: ``process`` (data by shortId, state by shortId, status, ...) with the
record's data as ``process.record`` when the procedure's requirements read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from procession.domain.errors import FieldError, Invalid
from procession.domain.expressions import compile_formula, compute

if TYPE_CHECKING:
    from procession.domain.procedure import Procedure
    from procession.domain.process import Process

GATE, MOVE = "gate", "move"
STATUSES = ("OPEN", "COMPLETED", "CANCELLED")
MAX_MOVES = 10  # hops one save may make
MAX_REQUIREMENTS = 100
_READS = re.compile(r"\bprocess\.(?:(data|derivedData|record)\.([A-Za-z_][A-Za-z0-9_]*)|([A-Za-z_]\w*))")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")
_PROCESS_FIELDS = frozenset(
    {"id", "procedure", "data", "derivedData", "record", "state", "status", "assignedTo", "createdAt"}
    | {"updatedAt", "nextActionAt", "parentProcess", "version"}
)


@dataclass(frozen=True, slots=True)
class Requirement:
    name: str
    use: str  # GATE or MOVE
    condition: str  # CEL
    state: str | None = None  # state id: a gate's to enter, a move's target
    status: str | None = None  # a gate's to enter, a move's target
    message: str = ""

    @property
    def reads(self) -> list[str]:
        """The fields of the process its condition reads (``data.email``, ``record.phone``, ``state``)."""
        out: list[str] = []
        for found in _READS.finditer(self.condition):
            name = f"{found.group(1)}.{found.group(2)}" if found.group(1) else found.group(3)
            if name not in out:
                out.append(name)
        return out

    @property
    def reads_record(self) -> bool:
        return any(r.startswith("record.") or r == "record" for r in self.reads)

    def holds(self, variables: dict[str, Any]) -> bool:
        try:
            return compute(self.condition, variables) is True
        except ValueError:
            return False

    def stored(self) -> dict[str, Any]:
        out = {"name": self.name, "use": self.use, "condition": self.condition}
        out |= {k: v for k, v in (("state", self.state), ("status", self.status)) if v is not None}
        return out | ({"message": self.message} if self.message else {})

    @classmethod
    def from_stored(cls, d: dict[str, Any]) -> Requirement:
        return cls(d["name"], d["use"], d["condition"], d.get("state"), d.get("status"), d.get("message", ""))

    def unmet(self, state_short: str | None) -> FieldError:
        """The error of this gate when it does not hold."""
        where = f"state {state_short}" if self.state else f"status {self.status}" if self.status else "a save"
        reads = ", ".join(self.reads) or "nothing"
        why = f": {self.message}" if self.message else ""
        return FieldError(
            "requirement_unmet",
            f"requirement {self.name!r} for {where} is not met{why} (condition {self.condition}; reads {reads})",
            "state" if self.state else "status" if self.status else None,
        )


def parse_requirements(
    raw: list[dict[str, Any]],
    *,
    state_id: Any,
    attributes: set[str],
    record_attributes: set[str] | None,
) -> list[Requirement]:
    """Requirements from the API's form (states by shortId), checked whole: ``Invalid`` naming each error's
    place (``requirements[i].field``). ``state_id(ref)`` raises ``Invalid`` for an unknown state;
    ``attributes``: the procedure's attribute shortIds; ``record_attributes``: its entity's, None when its
    processes have no record."""
    errors: list[FieldError] = []
    out: list[Requirement] = []
    names: set[str] = set()
    if len(raw) > MAX_REQUIREMENTS:
        raise Invalid.one("too_many_requirements", f"at most {MAX_REQUIREMENTS}", "requirements")
    for i, item in enumerate(raw):
        at = f"requirements[{i}]"
        name, use, condition = item.get("name"), item.get("use"), item.get("condition")
        if not isinstance(name, str) or not _NAME.match(name):
            errors.append(
                FieldError("invalid_value", "a name: a letter, then letters, digits or _", f"{at}.name")
            )
        elif name in names:
            errors.append(
                FieldError("duplicate_requirement", f"two requirements are called {name!r}", f"{at}.name")
            )
        names.add(str(name))
        if use not in (GATE, MOVE):
            errors.append(FieldError("invalid_value", "use is gate or move", f"{at}.use"))
        if not isinstance(condition, str) or not condition.strip():
            errors.append(
                FieldError("invalid_expression", "a CEL expression (a string) is needed", f"{at}.condition")
            )
            condition = "false"
        else:
            try:
                compile_formula(condition)
            except ValueError as e:
                errors.append(FieldError("invalid_expression", f"condition: {e}", f"{at}.condition"))
        state = None
        if item.get("state") is not None:
            try:
                state = state_id(str(item["state"]), field_name=f"{at}.state")
            except Invalid as e:
                errors.extend(e.errors)
        status = item.get("status")
        if status is not None and status not in STATUSES:
            errors.append(
                FieldError("unknown_status", f"status is one of {', '.join(STATUSES)}", f"{at}.status")
            )
        if use == MOVE and item.get("state") is None and status is None:
            errors.append(FieldError("no_target", "a move needs a state, a status or both", at))
        message = item.get("message") or ""
        if not isinstance(message, str):
            errors.append(FieldError("invalid_value", "message is a string", f"{at}.message"))
            message = ""
        requirement = Requirement(str(name), str(use), condition, state, status, message)
        errors.extend(_unknown_reads(requirement, at, attributes, record_attributes))
        out.append(requirement)
    if errors:
        raise Invalid(errors)
    return out


def _unknown_reads(
    r: Requirement, at: str, attributes: set[str], record_attributes: set[str] | None
) -> list[FieldError]:
    errors = []
    for read in r.reads:
        kind, _, name = read.partition(".")
        if kind in ("data", "derivedData") and name and name not in attributes:
            errors.append(
                FieldError(
                    "unknown_attribute", f"condition reads {read}: no such attribute", f"{at}.condition"
                )
            )
        elif kind == "record" and record_attributes is None:
            errors.append(
                FieldError(
                    "no_record", "condition reads the record, but processes have none", f"{at}.condition"
                )
            )
        elif kind == "record" and name and name not in record_attributes:  # type: ignore[operator]
            errors.append(
                FieldError(
                    "unknown_attribute",
                    f"condition reads {read}: the record has no such attribute",
                    f"{at}.condition",
                )
            )
        elif not name and kind not in _PROCESS_FIELDS:
            errors.append(
                FieldError(
                    "unknown_field", f"condition reads process.{kind}: no such field", f"{at}.condition"
                )
            )
    return errors


Move = tuple[str, Any, Any, "str | None"]  # (field, from, to, requirement; None: the save's own change)


def settle(
    process: Process,
    procedure: Procedure,
    changes: dict[str, list[Any]],
    record: dict[str, Any] | None,
    now: int,
    *,
    new: bool,
) -> list[Move]:
    """Apply the procedure's requirements to a process ``changes`` has just changed (``new``: a create): the
    gates of what the save asked for, the moves, the gates of every save. Returns the moves made, each
    field's first preceded by the save's own change of it; raises ``Invalid`` for an unmet gate, a cycle or
    too many moves (the caller puts the process back)."""
    requirements = procedure.requirements
    asked = {name: list(changes[name]) for name in ("state", "status") if name in changes}
    entered = (
        process.state if new or "state" in changes else None,
        process.status if new or "status" in changes else None,
    )

    def variables() -> dict[str, Any]:
        return {"process": process.variables(procedure) | {"record": record or {}}, "now": now}

    current = variables()
    _refuse(
        [r for r in requirements if r.use == GATE and _enters(r, *entered) and not r.holds(current)],
        procedure,
    )
    moves: list[Move] = []
    if changes or new:
        seen = {(process.state, process.status)}
        while (move := _next_move(process, procedure, current)) is not None:
            target = (move.state or process.state, move.status or process.status)
            if target in seen:
                where = f"{procedure.state_short(target[0])}/{target[1]}"
                raise Invalid.one(
                    "requirement_cycle",
                    f"requirement {move.name!r} moves the process back to {where}, where this save has been",
                    "state",
                )
            if len(moves) >= MAX_MOVES:
                raise Invalid.one(
                    "too_many_moves", f"requirements moved the process {MAX_MOVES} times", "state"
                )
            seen.add(target)
            for name, value in (("state", target[0]), ("status", target[1])):
                if value != getattr(process, name):
                    if name in asked and not any(m[0] == name for m in moves):
                        moves.append((name, asked[name][0], asked[name][1], None))
                    moves.append((name, getattr(process, name), value, move.name))
                    process.move(name, value, changes, now)
            current = variables()
    _refuse(
        [r for r in requirements if r.use == GATE and not (r.state or r.status) and not r.holds(current)],
        procedure,
    )
    return moves


def _enters(r: Requirement, state: str | None, status: str | None) -> bool:
    return (r.state is not None and r.state == state) or (r.status is not None and r.status == status)


def _next_move(process: Process, procedure: Procedure, current: dict[str, Any]) -> Requirement | None:
    """The first move that applies: its target is elsewhere, the graph allows it, its gates and it hold."""
    for r in procedure.requirements:
        if r.use != MOVE:
            continue
        state = r.state if r.state is not None and r.state != process.state else None
        status = r.status if r.status is not None and r.status != process.status else None
        if state is None and status is None:
            continue
        if state is not None and not procedure.can_move(process.state, state):
            continue
        gates = [g for g in procedure.requirements if g.use == GATE and _enters(g, state, status)]
        if r.holds(current) and all(g.holds(current) for g in gates):
            return r
    return None


def _refuse(unmet: list[Requirement], procedure: Procedure) -> None:
    if unmet:
        raise Invalid([r.unmet(procedure.state_short(r.state)) for r in unmet])
