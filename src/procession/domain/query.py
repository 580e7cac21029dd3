"""The list/search query language: ``where`` (root fields and attribute shortIds, operators, and/or) and
``sort``, parsed and type-checked against a procedure into a small tree the store turns into SQL.

    Query   = { <field>: RHS, "or": [Query], "and": [Query] }       (keys of one object are ANDed)
    RHS     = value | [values] (one of) | { "=" | "!=" | ">" | ">=" | "<" | "<=": value }

A field is a root field, an attribute, or an attribute of the process's record: ``record.<shortId>``, or the
bare shortId when the procedure has no field or attribute of that name. A record that is absent, or holds no
value there, compares as null. ``RecordParser`` reads the same language over an entity's records.

A query is bounded (``too_complex`` past a limit): it becomes one SQL statement, which each database
bounds in its own way (SQLite's parser stack and expression depth, PostgreSQL's 65,535 bound parameters),
and whose cost grows with it. The limits are far above what a screen or a report asks for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Protocol

from procession.domain.attributes import Attribute, Lookups, epoch_ms, parse_iso
from procession.domain.errors import Invalid
from procession.domain.procedure import Entity, Procedure, Schema
from procession.domain.process import Status

OPERATORS = ("=", "!=", ">", ">=", "<", "<=")
NOT_NULL = ("id", "status", "created_at", "updated_at", "is_deleted")
TIMES = {
    "createdAt": "created_at",
    "updatedAt": "updated_at",
    "nextActionAt": "next_action_at",
    "completedAt": "completed_at",
    "cancelledAt": "cancelled_at",
    "firstAssignedAt": "first_assigned_at",
    "lastAssignedAt": "last_assigned_at",
}
REFS = {
    "assignedTo": ("assigned_to", "user"),
    "createdBy": ("created_by", "user"),
    "firstAssignedTo": ("first_assigned_to", "user"),
    "belongsTo": ("belongs_to", "pod"),
}
IDS = {"id": "id", "record": "record_id", "entity": "entity_id", "parentProcess": "parent_process_id"}
MAX_NODES = 100  # comparisons and and/or groups in one ``where``
MAX_DEPTH = 10  # and/or groups nested in one another
MAX_VALUES = 1_000  # values of one "one of" array
MAX_ALL_VALUES = 2_000  # values in the whole ``where`` (each a bound parameter; lookups for references)
MAX_SORT_KEYS = 5  # ``sort`` keys (``id`` is added to break ties)
NUMERIC = ("integer", "float", "decimal", "number", "integerEnum", "integerId", "datetime")


@dataclass(frozen=True)
class Field:
    """A root column of ``table``, or a key (an attribute id) inside its JSON column ``data`` or
    ``derived_data``; with ``via`` (an entity id), the column of the process's record, of that entity."""

    column: str
    key: str | None = None
    kind: str = "text"  # text | number | boolean
    nullable: bool = True
    table: str = "processes"  # processes | records
    via: str | None = None


@dataclass(frozen=True)
class Compare:
    field: Field
    op: str  # one of OPERATORS, or "in"
    value: Any


@dataclass(frozen=True)
class Both:
    parts: tuple[Any, ...]


@dataclass(frozen=True)
class Either:
    parts: tuple[Any, ...]


@dataclass(frozen=True)
class SortKey:
    field: Field
    descending: bool


class Refs(Lookups, Protocol):
    """Lookups plus the pod references root fields may name."""

    def pod_id(self, ref: str) -> str | None:
        """The id of the pod with this id or shortId."""


def _time(value: Any) -> int:
    """Epoch ms, given as such or as an ISO 8601 timestamp."""
    if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
        return int(parse_iso(value).timestamp() * 1000)
    return epoch_ms(value)


def kind_of(attr: Attribute) -> str:
    """How an attribute's values compare: as numbers, booleans or text."""
    if attr.type in NUMERIC:
        return "number"
    return "boolean" if attr.type == "boolean" else "text"


_kind = kind_of


class Parser:
    """Parses one request's ``where`` and ``sort`` for one procedure."""

    def __init__(self, procedure: Procedure, refs: Refs, entity: Entity | None = None) -> None:
        """``entity``: the procedure's, whose attributes ``record.<shortId>`` names (None: it has none)."""
        self.procedure, self.refs, self.entity = procedure, refs, entity
        self.nodes = self.values = 0  # counted against MAX_NODES and MAX_ALL_VALUES as the query is read

    def _count(self, nodes: int, values: int, where: str) -> None:
        self.nodes, self.values = self.nodes + nodes, self.values + values
        if self.nodes > MAX_NODES:
            raise _too_complex(f"where holds more than {MAX_NODES} comparisons and and/or groups", "where")
        if self.values > MAX_ALL_VALUES:
            raise _too_complex(f"where holds more than {MAX_ALL_VALUES:,} values in all", where)

    def field(self, name: str, where: str) -> tuple[Field, Any]:
        """The field called ``name`` and the function that turns a client value into a stored one."""
        found, convert = self._field(name, where)
        if found.key is None and found.via is None and found.column in NOT_NULL:
            found = replace(found, nullable=False)
        return found, convert

    def _field(self, name: str, where: str) -> tuple[Field, Any]:
        if name in TIMES:
            return Field(TIMES[name], kind="number"), _time
        if name in REFS:
            column, what = REFS[name]
            find = self.refs.user_id if what == "user" else self.refs.pod_id
            return Field(column), lambda v: self._ref(find(v) if isinstance(v, str) else None, v, what)
        if name in IDS:
            return Field(IDS[name]), lambda v: v if isinstance(v, str) else self._bad(v, "an id")
        if name == "status":
            return Field("status"), lambda v: Status(v).value
        if name == "state":
            return (
                Field("state_id"),
                lambda v: (
                    self.procedure.state_id(v, field_name=where)
                    if isinstance(v, str)
                    else self._bad(v, "a state")
                ),
            )
        if name == "isDeleted":
            return Field(
                "is_deleted", kind="boolean"
            ), lambda v: v if isinstance(v, bool) else self._bad(v, "a bool")
        if name.startswith("record."):
            return self._record(name.removeprefix("record."), where)
        attr = self.procedure.by_short.get(name) or self.procedure.by_id.get(name)
        if attr is None:
            if self.entity is not None and name in self.entity.by_short:
                return self._record(name, where)
            raise Invalid.one(
                "unknown_field",
                f"{name!r} is neither a process field nor an attribute of {self.procedure.short_id}"
                + (f" or of its {self.entity.short_id} record" if self.entity else ""),
                where,
            )
        if attr.derived:
            return Field("derived_data", attr.id, kind=_kind(attr)), lambda v: v
        return Field("data", attr.id, kind=_kind(attr)), lambda v: attr.normalise(v, self.refs)

    def _record(self, name: str, where: str) -> tuple[Field, Any]:
        if self.entity is None:
            raise Invalid.one("unknown_field", f"{self.procedure.short_id} is not created for records", where)
        return record_field(self.entity, name, self.refs, where, via=self.entity.id)

    @staticmethod
    def _ref(found: str | None, value: Any, what: str) -> str:
        if found is None:
            raise ValueError(f"{value!r} is not a {what} of this team")
        return found

    @staticmethod
    def _bad(value: Any, expected: str) -> Any:
        raise ValueError(f"{value!r} is not {expected}")

    def where(self, query: Any, path: str = "where", depth: int = 0) -> Both:
        if not isinstance(query, dict):
            raise Invalid.one("invalid_query", "must be an object", path)
        if not query and depth:
            self._count(1, 0, path)  # an empty query in a group (true) is a node too
        parts: list[Any] = []
        for key, rhs in query.items():
            where = f"{path}.{key}"
            if key in ("or", "and"):
                if not isinstance(rhs, list) or not rhs:
                    raise Invalid.one("invalid_query", f"{key} must be a non-empty list of queries", where)
                if depth == MAX_DEPTH:
                    raise _too_complex(f"and/or groups nest more than {MAX_DEPTH} deep", where)
                self._count(1, 0, where)
                subs = tuple(self.where(q, f"{where}[{i}]", depth + 1) for i, q in enumerate(rhs))
                parts.append(Either(subs) if key == "or" else Both(subs))
            else:
                parts.extend(self.compare(key, rhs, where))
        return Both(tuple(parts))

    def compare(self, name: str, rhs: Any, where: str) -> list[Compare]:
        field, convert = self.field(name, where)

        def value(v: Any) -> Any:
            if v is None:
                return None
            try:
                out = convert(v)
            except ValueError as e:
                raise Invalid.one("invalid_value", f"{name}: {e}", where) from None
            if not _comparable(
                out, field.kind
            ):  # a list (of a multi-valued attribute), an object, past 64 bits
                raise Invalid.one("invalid_value", f"{name}: {repr(v)[:100]} cannot be compared", where)
            return out

        if isinstance(rhs, list):
            if len(rhs) > MAX_VALUES:
                raise _too_complex(f"a list of values holds at most {MAX_VALUES:,}", where)
            self._count(1, len(rhs), where)
            return [Compare(field, "in", tuple(value(v) for v in rhs))]
        if isinstance(rhs, dict):
            if not rhs:
                raise Invalid.one("invalid_query", "an operator object needs at least one operator", where)
            self._count(len(rhs), len(rhs), where)
            unknown = [op for op in rhs if op not in OPERATORS]
            if unknown:
                raise Invalid.one(
                    "unknown_operator",
                    f"unknown operator {unknown[0]!r}; use one of {' '.join(OPERATORS)}",
                    where,
                )
            out = []
            for op, v in rhs.items():
                if v is None and op not in ("=", "!="):
                    raise Invalid.one("invalid_value", f"{name}: {op} needs a value, not null", where)
                out.append(Compare(field, op, value(v)))
            return out
        self._count(1, 1, where)
        return [Compare(field, "=", value(rhs))]

    def sort(self, keys: list[Any]) -> list[SortKey]:
        if len(keys) > MAX_SORT_KEYS:
            raise _too_complex(f"sort takes at most {MAX_SORT_KEYS} keys", "sort")
        out = []
        for i, key in enumerate(keys):
            where = f"sort[{i}]"
            if (
                not isinstance(key, dict)
                or not isinstance(key.get("field"), str)
                or key.get("dir", "asc") not in ("asc", "desc")
                or set(key) - {"field", "dir"}
            ):
                raise Invalid.one(
                    "invalid_sort", 'each sort key is {"field": name, "dir": "asc"|"desc"}', where
                )
            out.append(SortKey(self.field(key["field"], where)[0], key.get("dir", "asc") == "desc"))
        return out


class RecordParser(Parser):
    """Parses ``where`` and ``sort`` over an entity's records: ``id``, ``createdAt``, ``updatedAt`` and the
    entity's attributes (bare or as ``record.<shortId>``)."""

    def __init__(self, entity: Entity, refs: Refs) -> None:
        self.entity, self.refs = entity, refs
        self.nodes = self.values = 0

    def _field(self, name: str, where: str) -> tuple[Field, Any]:
        if name in ("createdAt", "updatedAt"):
            return Field(TIMES[name], kind="number", table="records"), _time
        if name == "id":
            return Field("id", table="records"), lambda v: v if isinstance(v, str) else self._bad(v, "an id")
        assert self.entity is not None
        return record_field(self.entity, name.removeprefix("record."), self.refs, where)


def record_field(
    entity: Schema, name: str, refs: Refs, where: str, *, via: str | None = None
) -> tuple[Field, Any]:
    """The field of the entity's attribute ``name`` on the records table (reached from a process with ``via``):
    the primary key's text is its indexed column ``pk_value``."""
    attr = entity.by_short.get(name) or entity.by_id.get(name)
    if attr is None or attr.derived:
        raise Invalid.one("unknown_field", f"{name!r} is not an attribute of {entity.short_id}", where)
    kind = _kind(attr)
    if attr.id == entity.primary_key and kind == "text":
        found = Field("pk_value", table="records", via=via)
    else:
        found = Field("data", attr.id, kind=kind, table="records", via=via)
    return found, lambda v: attr.normalise(v, refs)


def _too_complex(what: str, field: str) -> Invalid:
    return Invalid.one("too_complex", f"the query is too complex: {what}", field)


def _comparable(value: Any, kind: str) -> bool:
    """Whether a value can be bound into SQL and compared with a field of ``kind``, on both databases (a
    ``json`` attribute, say, takes any value, and is compared as text)."""
    if kind == "boolean" or isinstance(value, bool):
        return kind == "boolean" and isinstance(value, bool)
    if kind == "text":
        return isinstance(value, str)
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int) and -(2**63) <= value < 2**63
