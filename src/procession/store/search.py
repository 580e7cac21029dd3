"""The query tree of ``domain.query`` as SQL, with offset and keyset (cursor) paging."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
from dataclasses import replace
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from procession.domain.errors import BadRequest
from procession.domain.query import Both, Compare, Either, Field, SortKey
from procession.store import tables as t
from procession.store import words
from procession.store.indexes import json_key

c = t.processes.c
r = t.records.c
TABLES = {"processes": t.processes, "records": t.records}


def column(field: Field) -> Any:
    """The field's value; one of the process's record's (``via``) is read from the record (null without)."""
    value: Any = TABLES[field.table].c[field.column]
    if field.key is not None:
        value = value[json_key(field.key)]
        if field.kind == "number":
            value = value.as_float()
        else:
            value = value.as_boolean() if field.kind == "boolean" else value.as_string()
    if field.via is None:
        return value
    return sa.select(value).where(_of(field.via), r.id == c.record_id).scalar_subquery()


def _of(entity_id: str) -> Any:
    """Records of the entity: its id names one team's (the procedure's, whose processes are searched)."""
    return r.entity_id == entity_id


def _bound(col: Any, value: Any) -> Any:
    """``value`` as a parameter of the column's type: a JSON number compared as a float whatever its size (not
    as PostgreSQL's 32-bit ``integer``), a boolean as a boolean (SQLAlchemy takes a bare ``True`` for
    ``IS true`` and refuses it in ``<``)."""
    return sa.bindparam(None, value, type_=col.type)


def compare(col: Any, op: str, v: Any) -> Any:
    """``col op v`` in the query language's sense: ``!=`` and null compare as distinct, ``in`` may hold null."""
    if op == "in":
        present = col.in_(sa.bindparam(None, [x for x in v if x is not None], expanding=True, type_=col.type))
        return sa.or_(present, col.is_(None)) if None in v else present
    if v is None:
        return col.is_(None) if op == "=" else col.is_not(None)
    v = _bound(col, v)
    if op == "!=":
        return col.is_distinct_from(v)
    return {"=": col.__eq__, ">": col.__gt__, ">=": col.__ge__, "<": col.__lt__, "<=": col.__le__}[op](v)


def _matches_null(op: str, v: Any) -> bool:
    return (op == "=" and v is None) or (op == "!=" and v is not None) or (op == "in" and None in v)


def clause(node: Any, *, alternative: bool = False) -> Any:
    """``node`` as a condition on processes (``alternative``: it is a part of an ``Either``, or inside one)."""
    if isinstance(node, Both):
        return sa.and_(sa.true(), *(clause(p, alternative=alternative) for p in node.parts))
    if isinstance(node, Either):
        return sa.or_(*(clause(p, alternative=True) for p in node.parts))
    assert isinstance(node, Compare)
    field, op, v = node.field, node.op, node.value
    if field.via is None:
        return _narrowed(field, op, v, compare(column(field), op, v))
    # on the process's record: a semi-join the planner can drive from the record's side (its primary key's
    # index) into the processes' (procedure, record) index; a process without a record compares as null
    value = column(replace(field, via=None))
    records = sa.select(r.id).where(_of(field.via))
    if not _matches_null(op, v):
        found = records.where(_narrowed(field, op, v, compare(value, op, v)))
        return AmongRecords(found) if alternative and op == "=" else c.record_id.in_(found)
    # null matches: every process but those whose record holds a value that does not
    unmatched = records.where(value.is_not(None), sa.not_(compare(value, op, v)))
    return sa.or_(c.record_id.is_(None), c.record_id.not_in(unmatched))


class AmongRecords(ColumnElement[Any]):
    """Processes whose record is one of those ``records`` selects (their ids), as one of several alternatives:
    on PostgreSQL ``= ANY(ARRAY(…))``, the ids read first, so that the planner can look each up in the
    processes' (procedure, record) index and or the results, where ``IN (…)`` under an ``OR`` can only be
    checked row by row along the list; on SQLite ``IN (…)``, which it looks up so already."""

    inherit_cache = True
    _traverse_internals = [("records", InternalTraversal.dp_clauseelement)]
    type = sa.types.NullType()  # a condition, not a value (SQLite would compare a boolean with 1)

    def __init__(self, records: Any) -> None:
        self.records = records


@compiles(AmongRecords, "postgresql")
def _among_any(element: AmongRecords, compiler: SQLCompiler, **kw: Any) -> str:
    ids = sa.func.array(element.records.scalar_subquery())
    return str(compiler.process(c.record_id == sa.func.any(ids), **kw))


@compiles(AmongRecords)
def _among_in(element: AmongRecords, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(c.record_id.in_(element.records), **kw))


def _narrowed(field: Field, op: str, v: Any, compared: Any) -> Any:
    """``compared``, and for a record's text attribute equal to a value with words, the records whose words
    hold them (``words.RecordHolds``): the records' words index finds the few such records, where the
    attribute itself has no index to find them by."""
    if field.table == "records" and field.key is not None and op == "=" and words.has_words(v):
        return sa.and_(words.RecordHolds(v), compared)
    return compared


def _order(key: SortKey, col: Any = None) -> Any:
    """The ORDER BY term of ``key``, on its column or on ``col`` (the same values, read from a subquery)."""
    col = column(key.field) if col is None else col
    if not key.field.nullable and key.field.key is not None:
        # no NULL to place (``present``): the order an attribute's index holds, read forwards or backwards
        return col.desc().nulls_last() if key.descending else col.asc().nulls_first()
    ordered = col.desc() if key.descending else col.asc()
    return ordered.nulls_last() if key.field.nullable else ordered


def present(where: Any) -> set[Field]:
    """The fields ``where`` finds a value in, on every row it finds: those compared, at its top level, with a
    value (a missing one is NULL, which compares with nothing), or one of values none of which is null."""
    if not isinstance(where, Both):
        return set()
    out = set()
    for part in where.parts:
        if isinstance(part, Both):
            out |= present(part)
        elif isinstance(part, Compare) and _finds_value(part):
            out.add(part.field)
    return out


def _finds_value(compare: Compare) -> bool:
    if compare.op == "in":
        return bool(compare.value) and None not in compare.value
    return compare.op != "!=" and compare.value is not None


def narrowed(keys: list[SortKey], where: Any) -> list[SortKey]:
    """``keys`` with the fields ``where`` finds a value in marked as such: no NULL to sort or page past."""
    found = present(where)
    return [SortKey(replace(k.field, nullable=False), k.descending) if k.field in found else k for k in keys]


def _after(keys: list[SortKey], values: list[Any]) -> Any:
    """Rows strictly after ``values`` in the order of ``keys`` (NULLs last in both directions)."""
    ors = []
    for i, (key, v) in enumerate(zip(keys, values, strict=True)):
        col = column(key.field)
        if v is None:
            continue  # nothing sorts after NULL on this key
        beyond = col < _bound(col, v) if key.descending else col > _bound(col, v)
        if key.field.nullable:
            beyond = sa.or_(beyond, col.is_(None))
        equal = [
            column(k.field).is_(None) if w is None else column(k.field) == _bound(column(k.field), w)
            for k, w in zip(keys[:i], values[:i], strict=True)
        ]
        ors.append(sa.and_(*equal, beyond))
    after = sa.or_(sa.false(), *ors)
    first, v0 = keys[0], values[0]
    if v0 is None:
        return sa.and_(column(first.field).is_(None), after)
    # the same condition, plus a plain range on the first key so an index can seek instead of filtering
    col = column(first.field)
    bound = col <= _bound(col, v0) if first.descending else col >= _bound(col, v0)
    plain = sa.and_(sa.or_(bound, col.is_(None)) if first.field.nullable else bound, after)
    if len({k.descending for k in keys}) > 1 or any(k.field.nullable for k in keys):
        return plain
    cols = [column(k.field) for k in keys]
    row, at = sa.tuple_(*cols), sa.tuple_(*(_bound(col, v) for col, v in zip(cols, values, strict=True)))
    return RowOr(row < at if first.descending else row > at, plain)


class RowOr(ColumnElement[Any]):
    """``row`` (a row value compared) on PostgreSQL, whose index seeks to it however many rows tie on the
    first key; ``plain`` (the same rows) elsewhere: SQLite does not seek an expression's index by a row
    value."""

    inherit_cache = True
    _traverse_internals = [
        ("row", InternalTraversal.dp_clauseelement),
        ("plain", InternalTraversal.dp_clauseelement),
    ]
    type = sa.types.NullType()  # a condition, not a value

    def __init__(self, row: Any, plain: Any) -> None:
        self.row, self.plain = row, plain


@compiles(RowOr, "postgresql")
def _row(element: RowOr, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(element.row, **kw))


@compiles(RowOr)
def _plain(element: RowOr, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(element.plain, **kw))


def signature(keys: list[SortKey], where: Any) -> str:
    return hashlib.sha256(orjson.dumps([repr(keys), repr(where)])).hexdigest()[:16]


# A cursor is ``<payload>.<tag>`` (URL-safe base64, unpadded): the payload holds the query's signature and
# the last row's sort values, the tag is its HMAC-SHA256 under the server's secret key, so that only cursors
# this server (or one sharing its key) made are taken, and their values, bound into SQL, are its own.
_CONTEXT = b"procession list cursor\n"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _tag(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, _CONTEXT + payload, hashlib.sha256).digest()


def encode_cursor(key: bytes, sig: str, values: list[Any]) -> str:
    payload = orjson.dumps({"s": sig, "v": values})
    return f"{_b64(payload)}.{_b64(_tag(key, payload))}"


def decode_cursor(key: bytes, cursor: str, sig: str, keys: list[SortKey]) -> list[Any]:
    """The sort values of ``cursor``, made by ``encode_cursor`` with ``key`` for the query ``sig`` sorted by
    ``keys``; anything else (edited, made with another key, for another query) is ``invalid_cursor``."""
    values: Any = None
    try:
        payload, _, tag = cursor.partition(".")
        raw = _unb64(payload)
        if hmac.compare_digest(_unb64(tag), _tag(key, raw)):
            decoded = orjson.loads(raw)
            if isinstance(decoded, dict) and decoded.get("s") == sig:
                values = decoded.get("v")
    except ValueError:  # not base64, not JSON, not ASCII
        pass
    if (
        not isinstance(values, list)
        or len(values) != len(keys)
        or not all(_fits(k, v) for k, v in zip(keys, values, strict=True))
    ):
        raise BadRequest(
            "the cursor is not one this server made for this query and sort: send the _meta.nextCursor "
            "of the previous page as it came",
            field="cursor",
            code="invalid_cursor",
        )
    return values


def _fits(key: SortKey, value: Any) -> bool:
    """Whether ``value`` is of the type the sort key's column gives (a JSON text attribute on SQLite may
    give a number stored before its type changed); numbers within 64 bits and finite."""
    if value is None:
        return key.field.nullable
    if isinstance(value, float):
        number = math.isfinite(value)
    else:
        number = isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
    if key.field.kind == "number":
        return number
    if key.field.kind == "boolean":
        return isinstance(value, bool)
    return isinstance(value, str) or (key.field.key is not None and number)


def with_tiebreak(keys: list[SortKey], table: str = "processes") -> list[SortKey]:
    """The sort keys made total by ``id`` (in the direction of the first key), rows of ``table``; ties of an
    attribute go by ``updated_at`` first, the order its index holds them in (``indexes``)."""
    updated = Field("updated_at", nullable=False, kind="number", table=table)
    keys = keys or [SortKey(updated, True)]
    if any(k.field.key is None and k.field.via is None and k.field.column == "id" for k in keys):
        return keys
    last = keys[-1].field
    if last.key is not None and last.via is None and all(k.field != updated for k in keys):
        keys = [*keys, SortKey(updated, keys[0].descending)]
    return [*keys, SortKey(Field("id", nullable=False, table=table), keys[0].descending)]


def search_statement(
    base: Any, where: Any, keys: list[SortKey], after: list[Any] | None, skip: int, limit: int
) -> Any:
    """``base`` (a select of processes, or of records) filtered, ordered, positioned and limited (one extra
    row for hasMore)."""
    keys = narrowed(keys, where)
    stmt = base.add_columns(*(column(k.field).label(f"_k{i}") for i, k in enumerate(keys))).where(
        clause(where)
    )
    if after is not None and keys[0].field.nullable and after[0] is not None:
        return _after_value(stmt, keys, after, skip, limit)
    if after is not None:
        stmt = stmt.where(_after(keys, after))
    return stmt.order_by(*(_order(k) for k in keys)).offset(skip).limit(limit + 1)


def _after_value(stmt: Any, keys: list[SortKey], after: list[Any], skip: int, limit: int) -> Any:
    """The page after a value of a first key that may be missing: the rows with a value beyond it, then those
    without one (NULLs last), each read as a range of the key's index in order, the page taken from the two.
    As one condition (``… OR key IS NULL``), no index could seek to the position: each page would read every
    row before it."""
    first = keys[0]
    present = [SortKey(replace(first.field, nullable=False), first.descending), *keys[1:]]
    n = skip + limit + 1
    valued = stmt.where(_after(present, after)).order_by(*(_order(k) for k in present)).limit(n)
    missing = stmt.where(column(first.field).is_(None)).order_by(*(_order(k) for k in keys)).limit(n)
    both = sa.union_all(*(sa.select(part.subquery()) for part in (valued, missing))).subquery()
    ordered = (_order(k, both.c[f"_k{i}"]) for i, k in enumerate(keys))
    return sa.select(both).order_by(*ordered).offset(skip).limit(limit + 1)
