"""The base of every team-scoped repository: built for one team, which its statements bind once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any, Generic, TypeVar

import sqlalchemy as sa

from procession.domain.procedure import MAX_KEY, Schema
from procession.store.statement import ACROSS_TEAMS, Statement

# The statements every create runs are built once, here, with their values as bound parameters, and run
# as ``statement.Statement``s (no statement and cache key rebuilt per call). The team's parameter is ``b_team``,
# bound by ``Repository``'s helpers (``b_`` names never clash with a column).
TEAM: sa.BindParameter[str] = sa.bindparam("b_team")
REF: sa.BindParameter[str] = sa.bindparam("b_ref")  # an id or a shortId
ID: sa.BindParameter[str] = sa.bindparam("b_id")
T = TypeVar("T")


class Repository:
    def __init__(self, conn: sa.Connection, team_id: str) -> None:
        self.conn, self.team_id = conn, team_id

    def _rekey(self, table: sa.Table, owner: sa.Column, schema: Schema) -> None:
        """Recompute the primary-key value of every row of one owner (a procedure's processes, an entity's
        records) from their ``data``, after the owner's primary key changed: cleared first, so rows trading
        values never meet in the unique index; values two rows share raise ``IntegrityError``, values longer
        than ``MAX_KEY`` a ``ValueError``."""
        c = table.c
        mine = sa.and_(c.team_id == self.team_id, owner == schema.id)
        self.conn.execute(table.update().where(mine).values(pk_value=None))
        if schema.primary_key is None:
            return
        keys = (
            (row_id, schema.key_of(data))
            for row_id, data in self.conn.execute(sa.select(c.id, c.data).where(mine))
        )
        keyed = [{"b_id": row_id, "b_pk": key} for row_id, key in keys if key is not None]
        if any(len(k["b_pk"]) > MAX_KEY for k in keyed):
            raise ValueError(f"a value is longer than {MAX_KEY} characters")
        if keyed:
            self.conn.execute(
                table.update()
                .where(mine, c.id == sa.bindparam("b_id"))
                .values(pk_value=sa.bindparam("b_pk")),
                keyed,
            )

    def _first(self, stmt: Statement, **params: Any) -> tuple[Any, ...] | None:
        """The first row of a statement built once (``b_`` parameters), this team's id bound to ``TEAM``."""
        params["b_team"] = self.team_id
        return stmt.first(self.conn, params)

    def _scalar(self, stmt: Statement, **params: Any) -> Any:
        params["b_team"] = self.team_id
        return stmt.scalar(self.conn, params)

    def _write(self, stmt: Statement, **params: Any) -> None:
        params["b_team"] = self.team_id
        stmt.rows(self.conn, params)


class Numbered(Repository, Generic[T]):
    """A team's rows of a table with numbered ids (automation runs, webhook deliveries), each read as ``row``:
    a dataclass whose fields name the columns it holds."""

    table: sa.Table
    row: Callable[..., T]
    unfinished: tuple[str, ...]  # the statuses of rows still to be done

    def _select(self) -> Any:
        c = self.table.c
        return sa.select(*(c[f.name] for f in fields(self.row))).where(c.team_id == self.team_id)  # type: ignore[arg-type]

    def _rows(self, stmt: Any) -> list[T]:
        return [self.row(*row) for row in self.conn.execute(stmt)]

    def add(self, rows: list[dict[str, Any]]) -> list[int]:
        """Insert rows (each a dict of columns but id and team); their ids, growing in order."""
        if not rows:
            return []
        ids = new_ids(self.conn, self.table, len(rows))
        for row_id, row in zip(ids, rows, strict=True):
            row["id"], row["team_id"] = row_id, self.team_id
        self.conn.execute(self.table.insert(), rows)
        return ids

    def get(self, row_id: int, *, for_update: bool = False) -> T | None:
        stmt = self._select().where(self.table.c.id == row_id)
        row = self.conn.execute(stmt.with_for_update() if for_update else stmt).first()
        return self.row(*row) if row else None

    def of_task(self, task_ref: str) -> list[T]:
        """The unfinished rows a task holds, in order."""
        c = self.table.c
        return self._rows(
            self._select().where(c.task_ref == task_ref, c.status.in_(self.unfinished)).order_by(c.id)
        )


def new_ids(conn: sa.Connection, table: sa.Table, n: int) -> list[int]:
    """``n`` ids for ``table``, growing, each above every id taken before (SQLite: writers take turns)."""
    if conn.dialect.name == "postgresql":
        return list(
            conn.exec_driver_sql(
                f"SELECT nextval(pg_get_serial_sequence('{table.name}', 'id')) FROM generate_series(1, %s)",
                (n,),
            ).scalars()
        )
    # the highest id of every team's: ids are one sequence for all
    highest = sa.select(sa.func.coalesce(sa.func.max(table.c.id), 0)).prefix_with(ACROSS_TEAMS)
    top = int(conn.scalar(highest) or 0)
    return list(range(top + 1, top + 1 + n))
