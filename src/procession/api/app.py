"""The ASGI application: routers, error mapping, body limit."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from procession.api import admin, automations, errors, ext, internal, jobs
from procession.api.envelope import failure
from procession.bootstrap import Services
from procession.domain.errors import TooLarge


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


class Guard:
    """The outermost middleware: an exception that no handler answered (``errors.install``) gets the 500
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


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="Procession",
        version="0.1.0",
        description="A process engine for operations teams. Every reply is `{_data, _meta, _errors}`.",
    )
    app.state.services = services
    errors.install(app)
    app.include_router(ext.router)
    app.include_router(admin.router)
    app.include_router(internal.router)
    app.include_router(jobs.router)
    app.include_router(automations.router)

    @app.get("/healthz", tags=["meta"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(BodyLimit, limit=services.settings.max_body_bytes)
    app.add_middleware(Guard)  # added last: the outermost
    return app
