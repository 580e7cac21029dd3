"""A team's connectors (credentials stored sealed, opened by the caller) and the links steps made."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from procession.domain.connectors import Connector, Link
from procession.store import tables as t
from procession.store.repositories.base import Repository

C = t.connectors.c
L = t.links.c
_COLUMNS = (C.id, C.name, C.kind, C.base_url, C.settings, C.credential_fields, C.version, C.created_at,
            C.updated_at)  # fmt: skip
_LINK_COLUMNS = (L.process_id, L.connector_id, L.object_type, L.external_id, L.url, L.first_synced_at,
                 L.last_synced_at, L.automation_id, L.run_id)  # fmt: skip


def _connector(row: Any) -> Connector:
    values = list(row)
    values[5] = tuple(values[5] or ())
    return Connector(*values)


class Connectors(Repository):
    def all(self) -> list[Connector]:
        rows = self.conn.execute(sa.select(*_COLUMNS).where(C.team_id == self.team_id).order_by(C.name))
        return [_connector(r) for r in rows]

    def get(self, ref: str) -> Connector | None:
        """The connector whose id (or name) is ``ref``."""
        found = self.sealed(ref)
        return found[0] if found else None

    def sealed(self, ref: str) -> tuple[Connector, str | None] | None:
        """A connector and its sealed credentials."""
        row = self.conn.execute(
            sa.select(*_COLUMNS, C.credentials)
            .where(C.team_id == self.team_id, sa.or_(C.id == ref, C.name == ref))
            .order_by(sa.case((C.id == ref, 0), else_=1))
            .limit(1)
        ).first()
        return (_connector(row[:-1]), row[-1]) if row else None

    def sealed_all(self, ids: list[str]) -> dict[str, tuple[Connector, str | None]]:
        if not ids:
            return {}
        rows = self.conn.execute(
            sa.select(*_COLUMNS, C.credentials).where(C.team_id == self.team_id, C.id.in_(ids))
        )
        return {r[0]: (_connector(r[:-1]), r[-1]) for r in rows}

    def add(self, connector: Connector, credentials: str | None) -> None:
        self.conn.execute(
            t.connectors.insert().values({**_values(connector, credentials), "team_id": self.team_id})
        )

    def update(self, connector: Connector, credentials: str | None, *, expected_version: int) -> bool:
        """Write ``connector`` over the stored one if that is still at ``expected_version``."""
        done = self.conn.execute(
            t.connectors.update()
            .where(C.team_id == self.team_id, C.id == connector.id, C.version == expected_version)
            .values(_values(connector, credentials))
        )
        return bool(done.rowcount)

    def delete(self, connector_id: str) -> None:
        self.conn.execute(t.connectors.delete().where(C.team_id == self.team_id, C.id == connector_id))


def _values(c: Connector, credentials: str | None) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "kind": c.kind,
        "base_url": c.base_url,
        "settings": c.settings,
        "credentials": credentials,
        "credential_fields": list(c.credential_fields),
        "version": c.version,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
    }


class Links(Repository):
    def of_processes(self, process_ids: list[str]) -> dict[str, list[Link]]:
        """The links of these processes, by process."""
        if not process_ids:
            return {}
        rows = self.conn.execute(
            sa.select(*_LINK_COLUMNS)
            .where(L.team_id == self.team_id, L.process_id.in_(process_ids))
            .order_by(L.process_id, L.first_synced_at, L.object_type)
        )
        out: dict[str, list[Link]] = {}
        for row in rows:
            out.setdefault(row[0], []).append(Link(*row))
        return out

    def count_of(self, connector_id: str) -> int:
        return int(
            self.conn.scalar(
                sa.select(sa.func.count()).where(L.team_id == self.team_id, L.connector_id == connector_id)
            )
            or 0
        )

    def put(self, links: list[Link]) -> None:
        """Write links: a new one as it is; one already there (same process, connector and object type)
        takes the new external id, URL, last sync, automation and run, and keeps its first sync."""
        if not links:
            return
        dialect = postgresql if self.conn.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(t.links)
        stmt = stmt.on_conflict_do_update(
            index_elements=["team_id", "process_id", "connector_id", "object_type"],
            set_={
                name: stmt.excluded[name]
                for name in ("external_id", "url", "last_synced_at", "automation_id", "run_id")
            },
        )
        self.conn.execute(
            stmt,
            [
                {
                    "team_id": self.team_id,
                    "process_id": k.process_id,
                    "connector_id": k.connector_id,
                    "object_type": k.object_type,
                    "external_id": k.external_id,
                    "url": k.url,
                    "first_synced_at": k.first_synced_at,
                    "last_synced_at": k.last_synced_at,
                    "automation_id": k.automation_id,
                    "run_id": k.run_id,
                }
                for k in links
            ],
        )
