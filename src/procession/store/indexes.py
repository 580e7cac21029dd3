"""Indexes of attributes marked ``indexed``: one per attribute, on the very expression lists filter and sort
by (``search.column``), after the procedure (which every list query names) and followed by the default
order (``updated_at``, ``id``), so that an equality on it is served in the list's order as ``state`` is, and a
range or a sort on it reads the index in order.

The expression names its JSON key as a literal (``JsonKey``): SQLite uses an index on an expression only
for the same expression, which a bound key is not. On PostgreSQL the index holds the value ``DESC NULLS
LAST``, the order of a descending sort (which puts missing values last); read backwards it serves an
ascending sort when the query cannot meet a missing value (``search.present``). SQLite keeps NULL first in
an index, which serves the same orders.

An index is built outside the definition's transaction, by background work (``engine.indexing``): on
PostgreSQL ``CREATE INDEX CONCURRENTLY``, which never blocks writes; on SQLite, where a write blocks writers
anyway, in a transaction of its own. ``states`` reads the database's catalogue: an index is ready once it
exists and is valid.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from procession.domain.attributes import Attribute
from procession.domain.procedure import Procedure
from procession.domain.query import Field, kind_of

PREFIX = "ix_attr_"
SAFE_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # attribute ids are uuids: safe to write as a literal
# types whose values are lists or objects: nothing to order them by
NOT_INDEXABLE = frozenset(
    {"multiStringEnum", "multiIntegerEnum", "multiPhotos", "multiDocuments", "externalObject",
     "multiExternalObjects", "geolocation", "json"}
)  # fmt: skip
READY, BUILDING = "ready", "building"


class JsonKey(ColumnElement[Any]):
    """A key of a JSON column written as a literal path (``$."key"`` on SQLite, ``'key'`` on PostgreSQL)."""

    inherit_cache = True
    _traverse_internals = [("key", InternalTraversal.dp_string)]
    type = sa.String()

    def __init__(self, key: str) -> None:
        self.key = key


@compiles(JsonKey, "sqlite")
def _sqlite_key(element: JsonKey, _compiler: SQLCompiler, **_: Any) -> str:
    return f"'$.\"{element.key}\"'"


@compiles(JsonKey)
def _key(element: JsonKey, _compiler: SQLCompiler, **_: Any) -> str:
    return f"'{element.key}'"


def json_key(key: str) -> Any:
    """The key as lists look it up: a literal when it can be one (an attribute id), else a bound value."""
    return JsonKey(key) if SAFE_KEY.match(key) else key


def name(attribute_id: str) -> str:
    return PREFIX + attribute_id.replace("-", "")[:40]


def indexable(attribute: Attribute) -> bool:
    return attribute.type not in NOT_INDEXABLE and bool(SAFE_KEY.match(attribute.id))


def wanted(procedure: Procedure) -> dict[str, Attribute]:
    """Index name -> attribute, for the procedure's attributes marked ``indexed``."""
    return {name(a.id): a for a in procedure.attributes if a.indexed and indexable(a)}


def field(attribute: Attribute) -> Field:
    return Field("derived_data" if attribute.derived else "data", attribute.id, kind=kind_of(attribute))


def create(dialect: sa.Dialect, attribute: Attribute) -> str:
    """The statement that builds the attribute's index (if it does not exist)."""
    from procession.store.search import column  # the one expression lists use

    expr = str(column(field(attribute)).compile(dialect=dialect)).replace("processes.", "")
    if dialect.name == "postgresql":
        return (
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name(attribute.id)} ON processes "
            f"(procedure_id, ({expr}) DESC NULLS LAST, updated_at DESC, id DESC)"
        )
    return (
        f"CREATE INDEX IF NOT EXISTS {name(attribute.id)} ON processes (procedure_id, {expr}, updated_at, id)"
    )


def analyze(dialect: sa.Dialect, built: list[str]) -> list[str]:
    """The statements that give the planner its figures on new indexes."""
    if not built:
        return []
    return ["ANALYZE processes"] if dialect.name == "postgresql" else [f"ANALYZE {n}" for n in built]


def drop(dialect: sa.Dialect, index: str) -> str:
    concurrently = " CONCURRENTLY" if dialect.name == "postgresql" else ""
    return f"DROP INDEX{concurrently} IF EXISTS {index}"


def existing(conn: sa.Connection) -> dict[str, bool]:
    """Attribute indexes in the database -> whether each is valid (a concurrent build that failed is not)."""
    if conn.dialect.name == "postgresql":
        rows = conn.execute(
            sa.text(
                "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE c.relname LIKE :prefix"
            ),
            {"prefix": PREFIX + "%"},
        )
    else:
        rows = conn.execute(
            sa.text("SELECT name, 1 FROM sqlite_master WHERE type = 'index' AND name LIKE :prefix"),
            {"prefix": PREFIX + "%"},
        )
    return {str(n): bool(valid) for n, valid in rows}


def states(conn: sa.Connection, procedure: Procedure) -> dict[str, str]:
    """Attribute shortId -> ``ready`` or ``building``, for the procedure's indexed attributes."""
    found = existing(conn) if any(a.indexed for a in procedure.attributes) else {}
    return {a.short_id: READY if found.get(n) else BUILDING for n, a in wanted(procedure).items()}


def ready(conn: sa.Connection, procedure: Procedure) -> frozenset[str]:
    """Ids of the procedure's attributes whose index is ready."""
    found = existing(conn) if any(a.indexed for a in procedure.attributes) else {}
    return frozenset(a.id for n, a in wanted(procedure).items() if found.get(n))
