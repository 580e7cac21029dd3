"""Uploaded files and Idempotency-Key answers."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from procession.store import tables as t
from procession.store.repositories.base import ID, TEAM, Repository
from procession.store.statement import Statement

FILE_EXISTS = Statement(sa.select(t.files.c.id).where(t.files.c.team_id == TEAM, t.files.c.id == ID))


class Files(Repository):
    def exists(self, file_id: str) -> bool:
        return self._first(FILE_EXISTS, b_id=file_id) is not None

    def get(self, file_id: str) -> dict[str, Any] | None:
        c = t.files.c
        row = self.conn.execute(
            sa.select(c.id, c.filename, c.filetype, c.size, c.created_at).where(
                c.team_id == self.team_id, c.id == file_id
            )
        ).first()
        return row._asdict() if row else None

    def add(self, **values: Any) -> None:
        self.conn.execute(t.files.insert().values(team_id=self.team_id, **values))


_I = t.idempotency_keys.c
IDEMPOTENT_ANSWER = Statement(
    sa.select(_I.request_hash, _I.status_code, _I.response).where(
        _I.team_id == TEAM, _I.key == sa.bindparam("b_key")
    ),
    json_columns=[2],
)
INSERT_IDEMPOTENT_ANSWER = Statement(t.idempotency_keys.insert(), json_params=["response"])


class Idempotency(Repository):
    def get(self, key: str) -> tuple[str, int, Any] | None:
        row = self._first(IDEMPOTENT_ANSWER, b_key=key)
        return (row[0], row[1], row[2]) if row else None

    def put(self, key: str, *, request_hash: str, status_code: int, response: Any, now: int) -> None:
        row = {
            "team_id": self.team_id,
            "key": key,
            "request_hash": request_hash,
            "status_code": status_code,
            "response": response,
            "created_at": now,
        }
        INSERT_IDEMPOTENT_ANSWER.rows(self.conn, row)
