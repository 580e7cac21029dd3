"""What every console page shares: the templates, the route class that turns errors into pages, and the
way a page calls a use case (the same service functions as the API, in the thread pool)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from procession.api.errors import STATUS
from procession.bootstrap import Services
from procession.domain.errors import FieldError, Invalid, ProcessionError

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
SERVER_TIMING = "server-timing"


class SignInNeeded(Exception):
    """The page needs a signed-in user: to the sign-in page, and back here after."""


def _when(ms: Any) -> str:
    """Epoch milliseconds as a UTC date and time."""
    if ms in (None, ""):
        return ""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(int(ms) / 1000))


templates.env.filters["when"] = _when


class ConsoleRoute(APIRoute):
    """A console route: an error a service raises becomes a page saying so, with its status; a page that
    needs a session sends a visitor without one to sign in. Each reply says how long the server took."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            started = time.perf_counter()
            try:
                response: Response = await handler(request)
            except SignInNeeded:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                response = RedirectResponse(f"/sign-in?next={quote(target)}", status_code=303)
            except ProcessionError as e:
                response = page(request, "error.html", {"error": e}, status=status_of(e))
            response.headers[SERVER_TIMING] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
            return response

        return route


def status_of(error: ProcessionError) -> int:
    """The HTTP status the API gives ``error`` (its one table)."""
    return next(code for cls, code in STATUS.items() if isinstance(error, cls))


def services(request: Request) -> Services:
    return request.app.state.services


async def call(request: Request, use_case: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``use_case(uows, ...)`` on the thread pool, as the API's routes run it."""
    return await run_in_threadpool(services(request).run, use_case, *args, **kwargs)


def page(request: Request, name: str, context: dict[str, Any], *, status: int = 200) -> HTMLResponse:
    """Template ``name`` with ``context``, the session (``request.state.session``) and its CSRF token."""
    session = getattr(request.state, "session", None)
    base = {"session": session, "csrf": session.csrf if session else getattr(request.state, "csrf", "")}
    return templates.TemplateResponse(request, name, {**base, **context}, status_code=status)


def back(url: str) -> RedirectResponse:
    """After a form: to ``url`` (303, so a reload does not post again)."""
    return RedirectResponse(url, status_code=303)


def checked(model: type[M], body: dict[str, Any]) -> M:
    """``body`` as the API's command ``model``, or ``Invalid`` naming each field as the API's 422 would."""
    try:
        return model.model_validate(body)
    except ValidationError as e:
        raise Invalid(
            [FieldError("invalid", err["msg"], ".".join(map(str, err["loc"]))) for err in e.errors()]
        ) from None


def field_errors(error: ProcessionError) -> dict[str, str]:
    """An error's messages by field ("" for those of no field), to show each where it belongs."""
    out: dict[str, str] = {}
    for err in error.errors:
        key = err.field or ""
        out[key] = f"{out[key]}; {err.message}" if key in out else err.message
    return out
