"""Accounts: a user's password (argon2, never stored in clear), signing in, who a signed-in session stands
for, and a user's role changed or the user removed (never the team's last admin)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from procession.domain.clock import now_ms
from procession.domain.errors import Conflict, Invalid, NotFound, Unauthorized
from procession.services.common import Caller
from procession.services.teams import team_id as team_of
from procession.store.uow import UnitOfWork, UnitsOfWork

HASHER = PasswordHasher()
MIN_PASSWORD = 10  # characters
# verified when no such user exists, so that an unknown name takes as long to refuse as a wrong password
_DECOY = HASHER.hash("procession: no such user")
REFUSED = "the team, username or password is wrong"


def set_password(uows: UnitsOfWork, team_id: str, user_ref: str, password: str) -> None:
    """Give a user (id or username) a console password."""
    if len(password) < MIN_PASSWORD:
        raise Invalid.one("weak_password", f"a password has at least {MIN_PASSWORD} characters", "password")
    hashed = HASHER.hash(password)
    with uows.write(team_id) as uow:
        user_id = uow.users.id_of(user_ref)
        if user_id is None or not uow.users.set_password_hash(user_id, hashed):
            raise NotFound(f"no user {user_ref!r}", field="username")
        uow.commit()


def check_password(uows: UnitsOfWork, team_id: str, username: str, password: str) -> bool:
    """Whether ``password`` is the user's (False for a user without one)."""
    with uows.read(team_id) as uow:
        found = uow.users.password_hash(username)
    return _verify(found[1] if found else None, password)


def sign_in(uows: UnitsOfWork, engine: sa.Engine, team: str, username: str, password: str) -> Caller:
    """The caller a team slug, username and password stand for; one refusal for every wrong part."""
    try:
        team_id = team_of(engine, team.strip())
    except NotFound:
        _verify(None, password)
        raise Unauthorized(REFUSED) from None
    with uows.read(team_id) as uow:
        found = uow.users.password_hash(username.strip())
        user = uow.users.get(found[0]) if found else None
    if found is None or user is None or not _verify(found[1], password):
        raise Unauthorized(REFUSED)
    if HASHER.check_needs_rehash(str(found[1])):
        set_password(uows, team_id, user["id"], password)
    return Caller(team_id, user["role"], user["id"])


def session_user(uows: UnitsOfWork, team_id: str, user_id: str) -> tuple[Caller, dict[str, Any]]:
    """The caller and user a session names, as the user is now (its role may have changed); a user
    removed or without a password any more is signed out."""
    with uows.read(team_id) as uow:
        user = uow.users.get(user_id)
    if user is None or not user["has_password"]:
        raise Unauthorized("sign in again")
    return Caller(team_id, user["role"], user_id), user


def set_role(uows: UnitsOfWork, team_id: str, user_ref: str, role: str) -> dict[str, Any]:
    """Make a user (id or username) an admin or a member; the team keeps at least one admin."""
    if role not in ("admin", "member"):
        raise Invalid.one("invalid_role", f"role must be admin or member, not {role!r}", "role")
    with uows.write(team_id) as uow:
        user_id = _last_admin_kept(uow, user_ref, "make the last admin a member", leaves=role != "admin")
        uow.users.set_role(user_id, role)
        user = uow.users.get(user_id)
        uow.commit()
    assert user is not None
    return {k: user[k] for k in ("id", "username", "name", "role")}


def remove_user(uows: UnitsOfWork, team_id: str, user_ref: str) -> dict[str, Any]:
    """Remove a user: signed out, their API keys revoked, out of their pods; what they did keeps their id.
    The team's last admin stays."""
    with uows.write(team_id) as uow:
        user_id = _last_admin_kept(uow, user_ref, "remove the last admin", leaves=True)
        uow.users.remove(user_id, now_ms())
        uow.commit()
    return {"id": user_id, "deleted": True}


def _last_admin_kept(uow: UnitOfWork, user_ref: str, what: str, *, leaves: bool) -> str:
    """The id of the user ``user_ref`` names; ``Conflict`` if they ``leaves`` the admins and are the only one."""
    user_id = uow.users.id_of(user_ref)
    if user_id is None:
        raise NotFound(f"no user {user_ref!r}", field="username")
    if leaves and uow.users.admins() == (user_id,):
        raise Conflict(f"a team keeps at least one admin: cannot {what}", code="last_admin")
    return user_id


def _verify(hashed: str | None, password: str) -> bool:
    try:
        return HASHER.verify(hashed or _DECOY, password) and hashed is not None
    except (VerificationError, InvalidHashError):
        return False
