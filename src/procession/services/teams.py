"""Teams and API keys: keys are random 256-bit tokens, stored only as a SHA-256 hash and shown once."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import sqlalchemy as sa

from procession.domain.clock import new_id, now_ms
from procession.domain.errors import BadRequest, Conflict, Invalid, NotFound, Unauthorized
from procession.services.common import Caller
from procession.store.repositories.retention import FIRST_ROUND_MS, Retention
from procession.store.repositories.retention import add_task as add_retention_task
from procession.store.repositories.teams import Teams, key_by_hash
from procession.store.uow import UnitsOfWork

KEY_PREFIX = "prk_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def authenticate(engine: sa.Engine, token: str | None) -> Caller:
    """The caller a Bearer token stands for; the same 401 for a missing, unknown or revoked key."""
    if token:
        key = key_by_hash(engine, hash_key(token))
        if key is not None:
            return Caller(team_id=key.team_id, role=key.role, user_id=key.user_id, key_id=key.id)
    raise Unauthorized("a valid API key is required (Authorization: Bearer <key>)")


def team_id(engine: sa.Engine, slug: str) -> str:
    with engine.connect() as conn:
        found = Teams(conn).by_slug(slug)
    if found is None:
        raise NotFound(f"no team {slug!r}")
    return found


def create_team(engine: sa.Engine, slug: str, name: str = "") -> str:
    """A new, empty team; its id."""
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
        teams = Teams(conn)
        if teams.by_slug(slug) is not None:
            raise Conflict(f"team {slug!r} exists", field="slug")
        new = new_id()
        teams.add(id=new, slug=slug, name=name or slug, now=now_ms())
        add_retention_task(conn, new, now_ms() + FIRST_ROUND_MS)
    return new


def create_key(
    uows: UnitsOfWork, team_id: str, *, role: str, username: str | None = None, label: str = ""
) -> str:
    """A new API key (returned once, in clear) acting with ``role`` and, optionally, as a user."""
    with uows.write(team_id) as uow:
        if role not in ("admin", "member"):
            raise Invalid.one("invalid_role", f"role must be admin or member, not {role!r}", "role")
        user_id = None
        if username is not None:
            user_id = uow.users.id_of(username)
            if user_id is None:
                raise Invalid.one("unknown_user", f"{username!r} is not a user of this team", "user")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        uow.keys.add(
            id=new_id(),
            key_hash=hash_key(key),
            prefix=key[:12],
            role=role,
            user_id=user_id,
            label=label,
            created_at=now_ms(),
        )
        uow.commit()
        return key


def list_keys(uows: UnitsOfWork, team_id: str) -> list[dict[str, Any]]:
    with uows.read(team_id) as uow:
        return uow.keys.list()


def revoke_key(uows: UnitsOfWork, team_id: str, key_id: str) -> None:
    with uows.write(team_id) as uow:
        if not uow.keys.revoke(key_id, now_ms()):
            raise NotFound(f"no active key {key_id!r}")
        uow.commit()


def set_event_retention(uows: UnitsOfWork, team_id: str, days: int | None) -> None:
    """Remove the team's events once older than ``days`` (None or 0: keep them, the default)."""
    if days is not None and days < 0:
        raise BadRequest("days must be 0 (keep events) or more", field="days")
    with uows.write(team_id) as uow:
        Retention(uow.conn, team_id).set_event_days(days or None)
        uow.commit()
