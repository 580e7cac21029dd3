"""Request dependencies: the services, the authenticated caller, the role check."""

from __future__ import annotations

import hashlib

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from procession.bootstrap import Services
from procession.domain.errors import Forbidden
from procession.services.common import Caller
from procession.services.idempotency import Once
from procession.services.teams import authenticate

bearer = HTTPBearer(auto_error=False, description="An API key of the team")


async def services(request: Request) -> Services:
    """The app's services (async: nothing to wait for, so no trip through the thread pool)."""
    return request.app.state.services


async def caller(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Caller:
    """Any valid key of a team. On SQLite the lookup, an index probe of a local file (tens of µs), runs right
    here; over the network (PostgreSQL) it runs in the thread pool, so the event loop never waits on it."""
    svc: Services = request.app.state.services
    token = credentials.credentials if credentials else None
    if svc.settings.is_sqlite:
        return authenticate(svc.engine, token)
    return await run_in_threadpool(authenticate, svc.engine, token)


async def admin(who: Caller = Depends(caller)) -> Caller:
    """A key with the admin role."""
    if who.role != "admin":
        raise Forbidden("this needs an admin key")
    return who


def bound(key: str | None, route: str, body: BaseModel | bytes) -> Once | None:
    """An ``Idempotency-Key`` bound to the request (None without one)."""
    return Once(key, request_hash(route, body)) if key is not None else None


def request_hash(route: str, body: BaseModel | bytes) -> str:
    """What an Idempotency-Key is bound to: the route and the request's meaning (a model's fields as sent,
    or a body's bytes when it is not parsed up front)."""
    sent = body if isinstance(body, bytes) else body.model_dump_json(exclude_unset=True).encode()
    return hashlib.sha256(f"{route}\n".encode() + sent).hexdigest()
