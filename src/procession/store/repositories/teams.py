"""Teams, API keys, users and pods."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from procession.store import tables as t
from procession.store.repositories.base import REF, TEAM, Repository
from procession.store.statement import ACROSS_TEAMS, Statement


@dataclass(frozen=True)
class ApiKey:
    id: str
    team_id: str
    role: str
    user_id: str | None


_K = t.api_keys.c
KEY_BY_HASH = Statement(  # across teams: a request's key is what tells its team
    sa.select(_K.id, _K.team_id, _K.role, _K.user_id)
    .where(_K.key_hash == sa.bindparam("b_hash"), _K.revoked_at.is_(None))
    .prefix_with(ACROSS_TEAMS)
)


def key_by_hash(engine: sa.Engine, key_hash: str) -> ApiKey | None:
    """The active (not revoked) key with this hash, read on its own (the first thing a request does)."""
    row = KEY_BY_HASH.first_on_own(engine, {"b_hash": key_hash})
    return ApiKey(*row) if row else None


class Teams:
    """Teams and API keys: the only repository not scoped to a team (it finds the team)."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def by_slug(self, slug: str) -> str | None:
        return self.conn.scalar(sa.select(t.teams.c.id).where(t.teams.c.slug == slug))

    def add(self, *, id: str, slug: str, name: str, now: int) -> None:
        self.conn.execute(t.teams.insert().values(id=id, slug=slug, name=name, created_at=now))


class Keys(Repository):
    def add(self, **values: Any) -> None:
        self.conn.execute(t.api_keys.insert().values(team_id=self.team_id, **values))

    def list(self) -> list[dict[str, Any]]:
        c = t.api_keys.c
        rows = self.conn.execute(
            sa.select(c.id, c.prefix, c.role, c.user_id, c.label, c.created_at, c.revoked_at)
            .where(c.team_id == self.team_id)
            .order_by(c.created_at, c.id)
        )
        return [r._asdict() for r in rows]

    def revoke(self, key_id: str, now: int) -> bool:
        c = t.api_keys.c
        result = self.conn.execute(
            t.api_keys.update()
            .where(c.team_id == self.team_id, c.id == key_id, c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return result.rowcount == 1


_U = t.users.c
USER_ID = Statement(sa.select(_U.id).where(_U.team_id == TEAM, sa.or_(_U.id == REF, _U.username == REF)))


class Users(Repository):
    def id_of(self, ref: str) -> str | None:
        """The id of the user whose id or username is ``ref``."""
        return self._scalar(USER_ID, b_ref=ref)

    def list(self) -> list[dict[str, Any]]:
        c = t.users.c
        rows = self.conn.execute(
            sa.select(c.id, c.username, c.name, c.role).where(c.team_id == self.team_id).order_by(c.username)
        )
        return [r._asdict() for r in rows]

    def add(self, **values: Any) -> None:
        self.conn.execute(t.users.insert().values(team_id=self.team_id, **values))

    def get(self, user_id: str) -> dict[str, Any] | None:
        """A user by id, with whether it has a console password (never the hash)."""
        c = t.users.c
        row = self.conn.execute(
            sa.select(
                c.id, c.username, c.name, c.role, c.password_hash.is_not(None).label("has_password")
            ).where(c.team_id == self.team_id, c.id == user_id)
        ).first()
        return row._asdict() if row else None

    def password_hash(self, username: str) -> tuple[str, str | None] | None:
        """(id, password hash) of the user called ``username``."""
        c = t.users.c
        row = self.conn.execute(
            sa.select(c.id, c.password_hash).where(c.team_id == self.team_id, c.username == username)
        ).first()
        return (row[0], row[1]) if row else None

    def admins(self) -> tuple[str, ...]:
        """The ids of the team's admins, locked until the transaction ends (PostgreSQL): two changes that
        each leave one admin cannot both pass."""
        c = t.users.c
        stmt = sa.select(c.id).where(c.team_id == self.team_id, c.role == "admin").order_by(c.id)
        return tuple(self.conn.scalars(stmt.with_for_update()))

    def set_role(self, user_id: str, role: str) -> None:
        c = t.users.c
        self.conn.execute(
            t.users.update().where(c.team_id == self.team_id, c.id == user_id).values(role=role)
        )

    def remove(self, user_id: str, now: int) -> None:
        """Remove a user: the keys acting as them revoked (and no longer naming them), out of every pod."""
        k, c = t.api_keys.c, t.users.c
        self.conn.execute(
            t.api_keys.update()
            .where(k.team_id == self.team_id, k.user_id == user_id, k.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        self.conn.execute(
            t.api_keys.update().where(k.team_id == self.team_id, k.user_id == user_id).values(user_id=None)
        )
        p = t.pods.c
        for pod_id, members in self.conn.execute(sa.select(p.id, p.members).where(p.team_id == self.team_id)):
            if user_id in members:
                kept = [m for m in members if m != user_id]
                self.conn.execute(
                    t.pods.update().where(p.team_id == self.team_id, p.id == pod_id).values(members=kept)
                )
        self.conn.execute(t.users.delete().where(c.team_id == self.team_id, c.id == user_id))

    def set_password_hash(self, user_id: str, password_hash: str | None) -> bool:
        c = t.users.c
        result = self.conn.execute(
            t.users.update()
            .where(c.team_id == self.team_id, c.id == user_id)
            .values(password_hash=password_hash)
        )
        return result.rowcount == 1


_PO = t.pods.c
POD_ID = Statement(sa.select(_PO.id).where(_PO.team_id == TEAM, sa.or_(_PO.id == REF, _PO.short_id == REF)))


class Pods(Repository):
    def id_of(self, ref: str) -> str | None:
        """The id of the pod whose id or shortId is ``ref``."""
        return self._scalar(POD_ID, b_ref=ref)

    def list(self) -> list[dict[str, Any]]:
        c = t.pods.c
        rows = self.conn.execute(
            sa.select(c.id, c.short_id, c.name, c.members)
            .where(c.team_id == self.team_id)
            .order_by(c.short_id)
        )
        return [{"id": r.id, "shortId": r.short_id, "name": r.name, "members": r.members} for r in rows]

    def add(self, **values: Any) -> None:
        self.conn.execute(t.pods.insert().values(team_id=self.team_id, **values))
