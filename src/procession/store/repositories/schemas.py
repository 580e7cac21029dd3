"""Procedures and entities: versioned schema documents, and generated-id counters."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import sqlalchemy as sa

from procession.domain.procedure import Entity, Procedure
from procession.store import indexes
from procession.store import tables as t
from procession.store.repositories.base import ID, REF, TEAM, Repository
from procession.store.statement import Statement

D = TypeVar("D", Procedure, Entity)


class Schemas(Repository, Generic[D]):
    """Versioned schema documents (procedures, entities): found by shortId or id, parsed once per version
    (shared by every request), saved with optimistic versioning."""

    table: sa.Table
    parse: Any  # Procedure.from_row or Entity.from_row
    _version: Statement
    _full: Statement
    _parsed: dict[tuple[str, int], D]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        c = cls.table.c
        cls._version = Statement(
            sa.select(c.id, c.version).where(c.team_id == TEAM, sa.or_(c.short_id == REF, c.id == REF))
        )
        cls._full = Statement(
            sa.select(c.id, c.short_id, c.label, c.version, c.definition).where(
                c.team_id == TEAM, c.id == ID
            ),
            json_columns=[4],
        )
        cls._parsed = {}

    def get(self, ref: str) -> D | None:
        """The document whose shortId (or id) is ``ref``, or None."""
        row = self._first(self._version, b_ref=ref)
        if row is None:
            return None
        found = self._parsed.get((row[0], row[1]))
        if found is None:
            full = self._first(self._full, b_id=row[0])
            assert full is not None
            doc_id, short_id, label, version, definition = full
            found = self.parse(
                id=doc_id, short_id=short_id, label=label, version=version, definition=definition
            )
            self._parsed[(doc_id, version)] = found
        return found

    def list(self) -> list[D]:
        c = self.table.c
        ids = self.conn.scalars(sa.select(c.id).where(c.team_id == self.team_id).order_by(c.short_id)).all()
        return [d for d in (self.get(i) for i in ids) if d is not None]

    def save(self, doc: D, *, expected_version: int | None) -> int:
        """Insert (``expected_version`` None) or update; returns the new version, 0 when the version is stale."""
        c = self.table.c
        values = {"short_id": doc.short_id, "label": doc.label, "definition": doc.definition()}
        if expected_version is None:
            self.conn.execute(
                self.table.insert().values(id=doc.id, team_id=self.team_id, version=1, **values)
            )
            return 1
        result = self.conn.execute(
            self.table.update()
            .where(c.id == doc.id, c.team_id == self.team_id, c.version == expected_version)
            .values(version=expected_version + 1, **values)
        )
        return expected_version + 1 if result.rowcount == 1 else 0


_CO = t.counters.c
NEXT_NUMBER = Statement(
    t.counters.update()
    .where(_CO.procedure_id == sa.bindparam("b_procedure"), _CO.attribute_id == sa.bindparam("b_attribute"))
    .values(value=_CO.value + 1)
    .returning(_CO.value)
)


class Procedures(Schemas[Procedure]):
    table = t.procedures
    parse = Procedure.from_row

    def index_states(self, procedure: Procedure) -> dict[str, str]:
        """Indexed attribute shortId -> whether its index is ``ready`` or ``building``."""
        return indexes.states(self.conn, procedure)

    def ensure_counter(self, procedure_id: str, attribute_id: str, start: int) -> None:
        """The counter of a generated-id attribute, from ``start``: a row of ``counters``, and on PostgreSQL
        a sequence as well (see ``next_number``)."""
        c = t.counters.c
        exists = self.conn.scalar(
            sa.select(c.value).where(c.procedure_id == procedure_id, c.attribute_id == attribute_id)
        )
        if exists is None:
            self.conn.execute(
                t.counters.insert().values(
                    procedure_id=procedure_id, attribute_id=attribute_id, value=start - 1
                )
            )
            if self.conn.dialect.name == "postgresql":
                self.conn.exec_driver_sql(
                    f'CREATE SEQUENCE IF NOT EXISTS "{counter_sequence(attribute_id)}" MINVALUE {min(start, 1)} START {start}'
                )

    def next_number(self, procedure_id: str, attribute_id: str) -> int:
        """The next number of a generated-id attribute. On SQLite, from its ``counters`` row, in the
        transaction (writers take turns anyway). On PostgreSQL, from its sequence: a row everyone updates
        would be locked by each create until it commits, one create at a time; ``nextval`` never waits
        (a create that rolls back leaves a gap, as sequences do)."""
        if self.conn.dialect.name == "postgresql":
            return int(
                self.conn.exec_driver_sql(
                    f"SELECT nextval('\"{counter_sequence(attribute_id)}\"')"
                ).scalar_one()
            )
        params = {"b_procedure": procedure_id, "b_attribute": attribute_id}
        (number,) = NEXT_NUMBER.rows(self.conn, params)
        return int(number[0])


def counter_sequence(attribute_id: str) -> str:
    """The PostgreSQL sequence of a generated-id attribute (ids are unique, so is the name)."""
    return "counter_" + attribute_id.replace("-", "")


class Entities(Schemas[Entity]):
    table = t.entities
    parse = Entity.from_row
