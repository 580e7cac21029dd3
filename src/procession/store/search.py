"""The query tree of ``domain.query`` as SQL, with offset and keyset (cursor) paging."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson
import sqlalchemy as sa

from procession.domain.errors import Invalid
from procession.domain.query import Both, Compare, Either, Field, SortKey
from procession.store import tables as t

c = t.processes.c


def column(field: Field) -> Any:
    if field.key is None:
        return c[field.column]
    value = c[field.column][field.key]
    if field.kind == "number":
        return value.as_float()
    return value.as_boolean() if field.kind == "boolean" else value.as_string()


def clause(node: Any) -> Any:
    if isinstance(node, Both):
        return sa.and_(sa.true(), *(clause(p) for p in node.parts))
    if isinstance(node, Either):
        return sa.or_(*(clause(p) for p in node.parts))
    assert isinstance(node, Compare)
    col, op, v = column(node.field), node.op, node.value
    if op == "in":
        present = [x for x in v if x is not None]
        return sa.or_(col.in_(present), col.is_(None)) if None in v else col.in_(present)
    if v is None:
        return col.is_(None) if op == "=" else col.is_not(None)
    return {
        "=": col == v,
        "!=": col.is_distinct_from(v),
        ">": col > v,
        ">=": col >= v,
        "<": col < v,
        "<=": col <= v,
    }[op]


def _order(key: SortKey) -> Any:
    col = column(key.field)
    ordered = col.desc() if key.descending else col.asc()
    return ordered.nulls_last() if key.field.nullable else ordered


def _after(keys: list[SortKey], values: list[Any]) -> Any:
    """Rows strictly after ``values`` in the order of ``keys`` (NULLs last in both directions)."""
    ors = []
    for i, (key, v) in enumerate(zip(keys, values, strict=True)):
        col = column(key.field)
        if v is None:
            continue  # nothing sorts after NULL on this key
        beyond = col < v if key.descending else col > v
        if key.field.nullable:
            beyond = sa.or_(beyond, col.is_(None))
        equal = [
            column(k.field).is_(None) if w is None else column(k.field) == w
            for k, w in zip(keys[:i], values[:i], strict=True)
        ]
        ors.append(sa.and_(*equal, beyond))
    after = sa.or_(sa.false(), *ors)
    first, v0 = keys[0], values[0]
    if v0 is None:
        return sa.and_(column(first.field).is_(None), after)
    # the same condition, plus a plain range on the first key so an index can seek instead of filtering
    col = column(first.field)
    bound = col <= v0 if first.descending else col >= v0
    return sa.and_(sa.or_(bound, col.is_(None)) if first.field.nullable else bound, after)


def signature(keys: list[SortKey], where: Any) -> str:
    return hashlib.sha256(orjson.dumps([repr(keys), repr(where)])).hexdigest()[:16]


def encode_cursor(sig: str, values: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"s": sig, "v": values})).decode()


def decode_cursor(cursor: str, sig: str, width: int) -> list[Any]:
    try:
        decoded = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        ok = decoded["s"] == sig and len(decoded["v"]) == width
    except Exception:
        ok = False
    if not ok:
        raise Invalid.one(
            "invalid_cursor", "the cursor is malformed or belongs to another query or sort", "cursor"
        )
    return list(decoded["v"])


def with_tiebreak(keys: list[SortKey]) -> list[SortKey]:
    """The sort keys made total by ``id`` (in the direction of the first key)."""
    keys = keys or [SortKey(Field("updated_at", nullable=False, kind="number"), True)]
    if any(k.field.key is None and k.field.column == "id" for k in keys):
        return keys
    return [*keys, SortKey(Field("id", nullable=False), keys[0].descending)]


def search_statement(
    base: Any, where: Any, keys: list[SortKey], after: list[Any] | None, skip: int, limit: int
) -> Any:
    """``base`` (a select of processes) filtered, ordered, positioned and limited (one extra row for hasMore)."""
    stmt = base.add_columns(*(column(k.field).label(f"_k{i}") for i, k in enumerate(keys))).where(
        clause(where)
    )
    if after is not None:
        stmt = stmt.where(_after(keys, after))
    return stmt.order_by(*(_order(k) for k in keys)).offset(skip).limit(limit + 1)
