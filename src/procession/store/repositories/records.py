"""Records: the instances of an entity (a customer), matched by primary key."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from procession.domain.procedure import Entity
from procession.store import tables as t
from procession.store.repositories.base import ID, TEAM, Repository
from procession.store.statement import Statement

_RE = t.records.c
RECORD_BY_PK = Statement(
    sa.select(_RE.id, _RE.data).where(
        _RE.team_id == TEAM, _RE.entity_id == sa.bindparam("b_entity"), _RE.pk_value == sa.bindparam("b_pk")
    ),
    json_columns=[1],
)
_RECORD_EXISTS = sa.select(_RE.id).where(_RE.team_id == TEAM, _RE.id == ID)
RECORD_EXISTS = Statement(_RECORD_EXISTS)
RECORD_OF_ENTITY_EXISTS = Statement(_RECORD_EXISTS.where(_RE.entity_id == sa.bindparam("b_entity")))
INSERT_RECORD = Statement(t.records.insert(), json_params=["data"])
UPDATE_RECORD_DATA = Statement(
    t.records.update()
    .where(_RE.team_id == TEAM, _RE.id == ID)
    .values(data=sa.bindparam("b_data"), updated_at=sa.bindparam("b_now")),
    json_params=["b_data"],
)


class Records(Repository):
    def rekey(self, entity: Entity) -> None:
        self._rekey(t.records, t.records.c.entity_id, entity)

    def by_pk(self, entity_id: str, pk_value: str) -> tuple[str, dict[str, Any]] | None:
        row = self._first(RECORD_BY_PK, b_entity=entity_id, b_pk=pk_value)
        return (row[0], row[1]) if row else None

    def exists(self, record_id: str, entity_id: str | None) -> bool:
        if entity_id:
            return self._first(RECORD_OF_ENTITY_EXISTS, b_id=record_id, b_entity=entity_id) is not None
        return self._first(RECORD_EXISTS, b_id=record_id) is not None

    def get(self, record_id: str) -> dict[str, Any] | None:
        c = t.records.c
        row = self.conn.execute(
            sa.select(c.id, c.entity_id, c.data).where(c.team_id == self.team_id, c.id == record_id)
        ).first()
        return row._asdict() if row else None

    def page(self, entity_id: str, *, after: str | None, limit: int) -> list[dict[str, Any]]:
        """Records of an entity in id order, after the id ``after``."""
        c = t.records.c
        stmt = sa.select(c.id, c.data, c.updated_at).where(
            c.team_id == self.team_id, c.entity_id == entity_id
        )
        if after is not None:
            stmt = stmt.where(c.id > after)
        return [r._asdict() for r in self.conn.execute(stmt.order_by(c.id).limit(limit))]

    def data_of(self, record_ids: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        """Record id -> (entity id, data), for the records that exist."""
        if not record_ids:
            return {}
        c = t.records.c
        rows = self.conn.execute(
            sa.select(c.id, c.entity_id, c.data).where(c.team_id == self.team_id, c.id.in_(record_ids))
        )
        return {record_id: (entity_id, data) for record_id, entity_id, data in rows}

    def add(self, *, id: str, entity_id: str, pk_value: str | None, data: dict[str, Any], now: int) -> None:
        row = {
            "id": id,
            "team_id": self.team_id,
            "entity_id": entity_id,
            "pk_value": pk_value,
            "data": data,
            "created_at": now,
            "updated_at": now,
        }
        INSERT_RECORD.rows(self.conn, row)

    def update_data(self, record_id: str, data: dict[str, Any], now: int) -> None:
        self._write(UPDATE_RECORD_DATA, b_id=record_id, b_data=data, b_now=now)

    def update(self, record_id: str, *, data: dict[str, Any], pk_value: str | None, now: int) -> None:
        """Replace a record's data and its primary-key value (an edit that may change its key)."""
        c = t.records.c
        self.conn.execute(
            t.records.update()
            .where(c.team_id == self.team_id, c.id == record_id)
            .values(data=data, pk_value=pk_value, updated_at=now)
        )
