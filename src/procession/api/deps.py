"""Request dependencies: the services, the authenticated caller, the role check."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from procession.api.limits import Limited, RateLimits
from procession.api.limits import headers as rate_headers
from procession.api.observe import Observed, observed
from procession.bootstrap import Services
from procession.domain.errors import Forbidden, UnsupportedMediaType
from procession.services.common import Caller
from procession.services.idempotency import Once
from procession.services.teams import authenticate

log = logging.getLogger("procession.api")
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
        who = authenticate(svc.engine, token)
    else:
        who = await run_in_threadpool(authenticate, svc.engine, token)
    seen = observed(request.scope)
    if seen is not None:
        seen.team = who.team_id
    limits: RateLimits | None = request.app.state.limits
    if limits is not None and who.key_id is not None:
        await _count(limits, who, seen)
    return who


async def _count(limits: RateLimits, who: Caller, seen: Observed | None) -> None:
    """Count the request against the key's and the team's limits; their headers go on the reply. A store
    that does not answer lets the request through (logged, at most every ``QUIET_S``)."""
    global _warned
    try:
        standing = await limits.count(key_id=who.key_id or "", team_id=who.team_id)
    except Limited as e:
        if seen is not None:
            seen.headers = rate_headers(e.standing)
        raise
    except Exception as e:
        if time.monotonic() - _warned > QUIET_S:
            _warned = time.monotonic()
            log.warning("rate limits not counted: their store failed: %s: %s", type(e).__name__, e)
        return
    if seen is not None:
        seen.headers = rate_headers(standing)


QUIET_S = 10.0
_warned = -QUIET_S


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
