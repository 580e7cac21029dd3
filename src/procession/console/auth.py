"""Signing in to the console: a session in a signed, HttpOnly, SameSite=Lax cookie (the team, the user and
the session's CSRF token, signed with the server's secret key), checked at every page; every form posts the
CSRF token back (``csrf`` field, or the ``X-CSRF-Token`` header from the page's scripts). The role is read
from the user at each request, as the API reads it from the key: an admin sees settings, a member does not."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.concurrency import run_in_threadpool

from procession.api.observe import observed
from procession.console.web import ConsoleRoute, SignInNeeded, back, page, services
from procession.domain.errors import Forbidden, ProcessionError, Unauthorized
from procession.services.accounts import session_user, sign_in
from procession.services.common import Caller

COOKIE = "procession_session"
MAX_AGE_S = 12 * 3600
CSRF_FIELD, CSRF_HEADER = "csrf", "x-csrf-token"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


@dataclass(frozen=True)
class Session:
    caller: Caller
    username: str
    name: str
    csrf: str

    @property
    def is_admin(self) -> bool:
        return self.caller.role == "admin"


def _signer(request: Request) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(services(request).cursor_key, salt="procession console session")


def _read_cookie(request: Request) -> dict[str, Any] | None:
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        value = _signer(request).loads(raw, max_age=MAX_AGE_S)
    except BadSignature:
        return None
    return value if isinstance(value, dict) else None


async def _csrf_checked(request: Request, expected: str) -> None:
    """An unsafe request carries the session's CSRF token, or it is refused (403)."""
    if request.method not in UNSAFE:
        return
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        sent = str((await request.form()).get(CSRF_FIELD, ""))
    if not sent or not secrets.compare_digest(sent, expected):
        raise Forbidden("the form is out of date (its CSRF token is missing or wrong): reload the page")


async def signed_in(request: Request) -> Session:
    """The session of a signed-in user (to the sign-in page otherwise); unsafe requests checked for CSRF."""
    value = _read_cookie(request)
    if value is None:
        raise SignInNeeded
    try:
        caller, user = await run_in_threadpool(
            session_user, services(request).requests, str(value.get("t")), str(value.get("u"))
        )
    except Unauthorized:
        raise SignInNeeded from None
    session = Session(caller, user["username"], user["name"], str(value.get("c", "")))
    request.state.session = session
    if (seen := observed(request.scope)) is not None:  # the team, in the request's log line
        seen.team = caller.team_id
    await _csrf_checked(request, session.csrf)
    return session


async def admin(session: Session = Depends(signed_in)) -> Session:
    """A signed-in admin: settings and definitions are theirs."""
    if not session.is_admin:
        raise Forbidden("only an admin of the team can see this page")
    return session


def _pre_session(request: Request) -> str:
    """The CSRF token of the sign-in form, kept in a cookie of its own until the user signs in."""
    token = request.cookies.get("procession_csrf") or secrets.token_urlsafe(24)
    request.state.csrf = token
    return token


def _safe_next(target: str | None) -> str:
    """Only a path of this site: never another site after signing in."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/sign-in")
def sign_in_page(request: Request, next: str = "/") -> Response:
    token = _pre_session(request)
    response = page(request, "sign_in.html", {"next": _safe_next(next), "errors": {}, "form": {}})
    _set_pre_cookie(request, response, token)
    return response


def _set_pre_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        "procession_csrf", token, httponly=True, samesite="lax", secure=request.url.scheme == "https"
    )


@router.post("/sign-in")
async def sign_in_post(request: Request) -> Response:
    form = await request.form()
    token = request.cookies.get("procession_csrf", "")
    sent = str(form.get(CSRF_FIELD, ""))
    fields = {k: str(form.get(k, "")) for k in ("team", "username", "next")}
    if not token or not secrets.compare_digest(sent, token):
        error: ProcessionError = Forbidden("the form is out of date: try again")
    else:
        svc = services(request)
        try:
            caller = await run_in_threadpool(
                sign_in, svc.requests, svc.engine, fields["team"], fields["username"],
                str(form.get("password", "")),
            )  # fmt: skip
        except Unauthorized as e:
            error = e
        else:
            value = {"t": caller.team_id, "u": caller.user_id, "c": secrets.token_urlsafe(24)}
            signed = back(_safe_next(fields["next"]))
            signed.set_cookie(
                COOKIE, _signer(request).dumps(value), max_age=MAX_AGE_S, httponly=True, samesite="lax",
                secure=request.url.scheme == "https",
            )  # fmt: skip
            signed.delete_cookie("procession_csrf")
            return signed
    token = _pre_session(request)
    context = {"next": _safe_next(fields["next"]), "errors": {"": error.message}, "form": fields}
    response = page(request, "sign_in.html", context, status=401 if isinstance(error, Unauthorized) else 403)
    _set_pre_cookie(request, response, token)
    return response


@router.post("/sign-out")
def sign_out(session: Session = Depends(signed_in)) -> Response:
    response = back("/sign-in")
    response.delete_cookie(COOKIE)
    return response
