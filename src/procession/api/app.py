"""The ASGI application: routers, error mapping, body limit."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.routing import get_route_path

from procession.api import admin, automations, connectors, errors, ext, internal, jobs, records, webhooks
from procession.api.deps import body_media_type
from procession.api.envelope import Envelope, failure, reply
from procession.api.limits import RateLimits
from procession.api.observe import Observe, install_metrics
from procession.bootstrap import Services
from procession.console import install as install_console
from procession.domain.errors import TooLarge
from procession.services.health import PROBE_TIMEOUT_S, Readiness, sqlite_folder


class BodyLimit:
    """Refuse bodies over ``limit`` bytes with a 413, whether announced by Content-Length or streamed."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            response = failure(
                413, [{"code": "too_large", "message": f"the body exceeds {self.limit} bytes"}]
            )
            return await response(scope, receive, send)
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:  # raised to whoever reads the body (``errors.http_error``: FastAPI)
                raise TooLarge(f"the body exceeds {self.limit} bytes")
            return message

        return await self.app(scope, counted, send)


class Methods:
    """The methods of a path, told as RFC 9110 has it: ``OPTIONS`` is a 204 whose ``Allow`` lists them (§9.3.7:
    OPTIONS asks what a resource supports; it needs no key and says nothing of whether an id exists), and a
    method the path does not take is a 405 with the same ``Allow`` (§15.5.6: a 405 MUST carry it). They are
    the methods the OpenAPI document lists for the path's template, the most specific one that matches
    (fewest parameters: ``/process/list`` is not ``/process/{processId}``); Starlette's own 405 names only
    the first route that matches, where a path's methods are spread over several routes. Paths the document
    does not have are left to the router."""

    def __init__(self, app: Any, document: Callable[[], dict[str, Any]]) -> None:
        self.app, self.document = app, document
        self._templates: list[tuple[re.Pattern[str], int, set[str]]] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["method"] == "OPTIONS":
            allow = self.allow(get_route_path(scope))
            if allow is None:
                return await self.app(scope, receive, send)
            return await Response(status_code=204, headers={"Allow": allow})(scope, receive, send)

        async def allowing(message: Any) -> None:  # the router's 405, with every method of the path
            if message["type"] == "http.response.start" and message["status"] == 405:
                allow = self.allow(get_route_path(scope))
                if allow is not None:
                    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                    message = {**message, "headers": [*headers, (b"allow", allow.encode())]}
            await send(message)

        await self.app(scope, receive, allowing)

    def allow(self, path: str) -> str | None:
        """``Allow`` for ``path``, or None if no template of the document matches it."""
        matching = [(params, methods) for regex, params, methods in self.templates() if regex.fullmatch(path)]
        if not matching:
            return None
        fewest = min(params for params, _ in matching)
        own = {m for params, methods in matching if params == fewest for m in methods}
        return ", ".join(sorted(own | {"OPTIONS"}))

    def templates(self) -> list[tuple[re.Pattern[str], int, set[str]]]:
        """Each path of the document as a pattern (a parameter is a segment, as Starlette's), with its number of
        parameters and its methods; built at the first use, when every route is in."""
        if self._templates is None:
            self._templates = [
                (
                    re.compile("[^/]+".join(re.escape(part) for part in re.split(r"\{[^}]*\}", path))),
                    path.count("{"),
                    {m.upper() for m in operations if m.upper() in HTTP_METHODS},
                )
                for path, operations in self.document()["paths"].items()
            ]
        return self._templates


HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "QUERY", "TRACE"})


class Guard:
    """The middleware inside ``observe.Observe``: an exception that no handler answered (``errors.install``) gets the 500
    envelope here (``errors.unexpected``: a request id, one log line). Without it, Starlette's server-error
    middleware answers and then raises it again to the server, which logs it whole (a statement and its
    parameters with it) and closes the connection, so the client's next request on it fails."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def sending(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            response = errors.unexpected(scope, exc)
            if not started:  # else the reply is cut short: the server ends the connection
                await response(scope, receive, send)


class WorkersSeen(BaseModel):
    seen: int
    withinSeconds: int


class Ready(BaseModel):
    database: str
    workers: WorkersSeen | None = None


READY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": Envelope[Ready], "description": "The database takes writes"},
    503: {
        "model": Envelope[None],
        "description": "The database takes no write now: `storage_full`, or `not_ready` (unreachable, "
        f"refused, or no answer within {PROBE_TIMEOUT_S:g} s); or, on PostgreSQL, `no_workers`: no worker "
        "was seen lately",
    },
}


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="Procession",
        version="0.1.0",
        description="A process engine for operations teams. Every reply is `{_data, _meta, _errors}`.",
        docs_url=None,  # served by the console, with its assets from the package (no CDN)
        redoc_url=None,
    )
    app.state.services = services
    settings = services.settings
    limited = settings.rate_limit_key or settings.rate_limit_team
    app.state.limits = (
        RateLimits(settings.rate_limit_key, settings.rate_limit_team, settings.rate_limit_storage)
        if limited
        else None
    )
    errors.install(app)
    # ext first: a read by primary key is …/process/{pkShortId}/{any value}; each route's body is checked to
    # be of its media type before it is read (``deps.body_media_type``)
    for api in (ext, records, connectors, admin, internal, jobs, automations, webhooks):
        app.include_router(api.router, dependencies=[Depends(body_media_type)])
    install_console(app)

    @app.get("/healthz", tags=["meta"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    install_metrics(app)
    readiness = Readiness(
        services.write,
        services.engine,
        disk=sqlite_folder(services.engine),
        workers=not settings.is_sqlite and not settings.embedded_worker,
    )

    @app.get("/readyz", tags=["meta"], responses=READY_RESPONSES)
    async def readyz() -> Response:
        """Whether this server can take writes: a real write, bounded by a short deadline, that leaves
        nothing behind. On PostgreSQL, how many workers sent a heartbeat lately (``workers``). No key needed."""
        return reply(await readiness.check())

    app.add_middleware(BodyLimit, limit=services.settings.max_body_bytes)
    app.add_middleware(Methods, document=app.openapi)
    app.add_middleware(Guard)
    app.add_middleware(Observe, access_log=settings.access_log)  # added last: the outermost
    return app
