"""Procedures and entities: the schemas processes and records follow."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from procession.domain.attributes import Attribute, Lookups
from procession.domain.automations import Automation
from procession.domain.errors import FieldError, Invalid
from procession.domain.expressions import evaluate
from procession.domain.requirements import Requirement

MAX_KEY = 500  # characters of a primary-key value (what lookups by key index)


@dataclass
class State:
    id: str
    short_id: str
    label: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "shortId": self.short_id, "label": self.label}


@dataclass
class Schema:
    """What procedures and entities share: attributes keyed by id and shortId, a primary key."""

    id: str
    short_id: str
    label: str
    attributes: list[Attribute]
    primary_key: str | None = None  # attribute id

    @cached_property
    def by_short(self) -> dict[str, Attribute]:
        return {a.short_id: a for a in self.attributes}

    @cached_property
    def by_id(self) -> dict[str, Attribute]:
        return {a.id: a for a in self.attributes}

    @property
    def primary_key_attribute(self) -> Attribute | None:
        return self.by_id.get(self.primary_key) if self.primary_key else None

    def key_of(self, data: dict[str, Any]) -> str | None:
        """The primary-key value of stored ``data``, as kept for lookups by key."""
        value = data.get(self.primary_key) if self.primary_key else None
        return None if value is None else str(value)

    def normalise_data(
        self, data: dict[str, Any], lookups: Lookups, *, prefix: str = "data"
    ) -> dict[str, Any]:
        """Shortid-keyed input -> id-keyed stored values; every bad field reported at once."""
        out: dict[str, Any] = {}
        errors: list[FieldError] = []
        for key, value in data.items():
            attr = self.by_short.get(key) or self.by_id.get(key)
            where = f"{prefix}.{key}"
            if attr is None:
                errors.append(
                    FieldError("unknown_attribute", f"{self.short_id} has no attribute {key!r}", where)
                )
            elif attr.derived:
                errors.append(FieldError("read_only", f"{key!r} is derived and cannot be written", where))
            else:
                try:
                    out[attr.id] = attr.normalise(value, lookups)
                except ValueError as e:
                    errors.append(FieldError("invalid_value", f"{key} ({attr.type}) {e}", where))
                    continue
                if attr.id == self.primary_key and len(str(out[attr.id])) > MAX_KEY:
                    errors.append(
                        FieldError(
                            "invalid_value", f"{key} is the primary key: at most {MAX_KEY} characters", where
                        )
                    )
        if errors:
            raise Invalid(errors)
        return out

    def missing_required(self, data: dict[str, Any], *, prefix: str = "data") -> list[FieldError]:
        return [
            FieldError("required", f"{a.short_id} is required", f"{prefix}.{a.short_id}")
            for a in self.attributes
            if a.required and not a.derived and data.get(a.id) is None
        ]

    def to_short(self, data: dict[str, Any]) -> dict[str, Any]:
        """Id-keyed stored values -> shortId-keyed values for the external API."""
        names = self.by_id
        return {names[k].short_id: v for k, v in data.items() if k in names}

    def derive(
        self, data: dict[str, Any], *, previous: dict[str, Any] | None = None, changed: Iterable[str] = ()
    ) -> dict[str, Any]:
        """Derived attributes' values (id-keyed), computed from the data. Given the ``previous`` values and the
        attribute ids that ``changed``, formulas that read none of them keep their previous value."""
        changed_short = {self.by_id[k].short_id for k in changed if k in self.by_id}
        out: dict[str, Any] = {}
        variables: dict[str, Any] | None = None
        for a in self.attributes:
            if a.formula is None:
                continue
            inputs = a.formula_inputs
            if previous is not None and inputs is not None and not inputs & changed_short:
                if a.id in previous:
                    out[a.id] = previous[a.id]
                continue
            variables = variables or {"data": self.to_short(data)}
            out[a.id] = evaluate(a.formula, variables)
        return out


def _schema_fields(
    id: str, short_id: str, label: str, version: int, definition: dict[str, Any]
) -> dict[str, Any]:
    """The fields of a stored schema that procedures and entities share."""
    return {
        "id": id,
        "short_id": short_id,
        "label": label,
        "version": version,
        "attributes": [Attribute.from_dict(a) for a in definition["attributes"]],
        "primary_key": definition.get("primaryKey"),
    }


@dataclass
class Entity(Schema):
    version: int = 1

    def definition(self) -> dict[str, Any]:
        """The stored form (ids throughout)."""
        return {"attributes": [a.to_dict() for a in self.attributes], "primaryKey": self.primary_key}

    @classmethod
    def from_row(
        cls, *, id: str, short_id: str, label: str, version: int, definition: dict[str, Any]
    ) -> Entity:
        return cls(**_schema_fields(id, short_id, label, version, definition))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "shortId": self.short_id,
            "label": self.label,
            "attributes": [a.to_dict() for a in self.attributes],
            "primaryKey": self.primary_key_attribute.short_id if self.primary_key_attribute else None,
        }


@dataclass
class Procedure(Schema):
    states: list[State] = field(default_factory=list)
    initial_state: str | None = None  # state id
    transitions: dict[str, list[str]] = field(default_factory=dict)  # state id -> state ids
    entity: str | None = None  # entity id of the records processes are created for
    parent: str | None = None  # parent procedure id
    version: int = 1
    automations: list[Automation] = field(default_factory=list)  # kept here: a save reads them with the rest
    requirements: list[Requirement] = field(default_factory=list)  # met on every save (``Process.apply``)

    @cached_property
    def reads_record(self) -> bool:
        """Whether a requirement reads the process's record (saves then read it for them)."""
        return any(r.reads_record for r in self.requirements)

    @cached_property
    def states_by_short(self) -> dict[str, State]:
        return {s.short_id: s for s in self.states}

    @cached_property
    def states_by_id(self) -> dict[str, State]:
        return {s.id: s for s in self.states}

    def state_id(self, ref: str, *, field_name: str = "state") -> str:
        """The id of the state with this shortId (or id); 422 when unknown."""
        state = self.states_by_short.get(ref) or self.states_by_id.get(ref)
        if state is None:
            known = ", ".join(s.short_id for s in self.states)
            raise Invalid.one(
                "unknown_state", f"{self.short_id} has no state {ref!r} (known: {known})", field_name
            )
        return state.id

    def state_short(self, state_id: str | None) -> str | None:
        state = self.states_by_id.get(state_id) if state_id else None
        return state.short_id if state else None

    def automation(self, ref: str) -> Automation | None:
        """The automation with this id or name."""
        return next((a for a in self.automations if ref in (a.id, a.name)), None)

    def can_move(self, source: str | None, target: str) -> bool:
        """Whether the state graph allows ``source`` -> ``target`` (staying put is always allowed)."""
        return source is None or source == target or target in self.transitions.get(source, [])

    def definition(self) -> dict[str, Any]:
        """The stored form (ids throughout)."""
        return {
            "attributes": [a.to_dict() for a in self.attributes],
            "primaryKey": self.primary_key,
            "states": [s.to_dict() for s in self.states],
            "initialState": self.initial_state,
            "transitions": self.transitions,
            "entity": self.entity,
            "parent": self.parent,
            "automations": [a.stored() for a in self.automations],
            "requirements": [r.stored() for r in self.requirements],
        }

    @classmethod
    def from_row(
        cls, *, id: str, short_id: str, label: str, version: int, definition: dict[str, Any]
    ) -> Procedure:
        return cls(
            **_schema_fields(id, short_id, label, version, definition),
            states=[State(s["id"], s["shortId"], s.get("label", "")) for s in definition["states"]],
            initial_state=definition.get("initialState"),
            transitions=definition.get("transitions", {}),
            entity=definition.get("entity"),
            parent=definition.get("parent"),
            automations=[Automation.from_stored(a) for a in definition.get("automations", ())],
            requirements=[Requirement.from_stored(r) for r in definition.get("requirements", ())],
        )

    def to_dict(self) -> dict[str, Any]:
        """The public form: ids with shortIds alongside, transitions by state shortId."""
        short = self.state_short
        return {
            "id": self.id,
            "shortId": self.short_id,
            "label": self.label,
            "version": self.version,
            "attributes": [a.to_dict() for a in self.attributes],
            "primaryKey": self.primary_key_attribute.short_id if self.primary_key_attribute else None,
            "states": [s.to_dict() for s in self.states],
            "initialState": short(self.initial_state),
            "transitions": {short(k): [short(t) for t in v] for k, v in self.transitions.items()},
            "entity": self.entity,
            "parentProcedure": self.parent,
            "automations": [a.public(self) for a in self.automations],
            "requirements": [
                r.stored() | {"state": short(r.state)} if r.state else r.stored() for r in self.requirements
            ],
        }
