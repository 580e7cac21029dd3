"""Request dependencies: the services, the authenticated caller, the role check."""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from procession.bootstrap import Services
from procession.domain.errors import Forbidden, UnsupportedMediaType
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


JSON = "application/json"


def expected_media_type(route: Any) -> str | None:
    """The media type of the body ``route`` reads (None: it reads none): its body's, or the one its
    document describes (a body it reads as bytes)."""
    field = getattr(route, "body_field", None)
    if field is not None:
        return str(getattr(field.field_info, "media_type", JSON))
    content = ((getattr(route, "openapi_extra", None) or {}).get("requestBody") or {}).get("content") or {}
    return next(iter(content), None)


async def body_media_type(request: Request) -> None:
    """Refuse, with a 415 naming both, a body sent as another media type than the route reads: JSON is
    ``application/json`` or ``…+json``, an upload ``multipart/form-data``; a body sent without a
    ``Content-Type`` is refused alike. Every API route has it: none takes a body for what it was not sent as."""
    expected = expected_media_type(request.scope.get("route"))
    sent = request.headers.get("content-type")
    if expected is None or (sent is None and not await request.body()):
        return  # no body: the route says what it lacks
    media = (sent or "").split(";")[0].strip().lower()
    if media == expected or (
        expected == JSON and media.startswith("application/") and media.endswith("+json")
    ):
        return
    raise UnsupportedMediaType(
        (f"the body is sent as {sent!r}" if sent else "the body is sent without a Content-Type")
        + f": send it as {expected} (Content-Type: {expected})"
    )


def bound(key: str | None, route: str, body: BaseModel | bytes) -> Once | None:
    """An ``Idempotency-Key`` bound to the request (None without one)."""
    return Once(key, request_hash(route, body)) if key is not None else None


def request_hash(route: str, body: BaseModel | bytes) -> str:
    """What an Idempotency-Key is bound to: the route and the request's meaning (a model's fields as sent,
    or a body's bytes when it is not parsed up front)."""
    sent = body if isinstance(body, bytes) else body.model_dump_json(exclude_unset=True).encode()
    return hashlib.sha256(f"{route}\n".encode() + sent).hexdigest()
