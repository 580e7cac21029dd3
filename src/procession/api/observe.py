"""What a request leaves behind: its id, its log line, its place in the metrics, and ``/metrics`` itself.

``Observe`` is the outermost middleware. A request's id is the client's ``X-Request-ID`` when that is a
plain token (letters, digits, ``._-``, at most 64), or else one made here; it is returned in the reply's
``X-Request-ID``, in the ``_meta.requestId`` of every error envelope, in every log line written while the
request is served, and in those of the background work it starts (``store.tasks``). Once the reply is
sent: one ``procession.access`` line (method, route template, status, duration, team) and one observation
of ``procession_http_request_duration_seconds``. Nothing of the request's headers, query or body is logged.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import os
import re
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from procession import metrics
from procession.logs import REQUEST_ID

log = logging.getLogger("procession.access")
SCOPE_KEY = "procession.observed"
_TOKEN = re.compile(rb"[A-Za-z0-9._-]{1,64}")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "QUERY", "TRACE"})
_UNMATCHED = "<unmatched>"  # the route of a path no route took (a 404): its text is the client's


class Observed:
    """What the handlers tell the middleware about a request: its team, the rate-limit headers."""

    __slots__ = ("headers", "request_id", "team")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.team: str | None = None
        self.headers: list[tuple[bytes, bytes]] = []


def observed(scope: Any) -> Observed | None:
    """The request's ``Observed`` (None outside ``Observe``: an app built without it, in a unit test)."""
    return scope.get(SCOPE_KEY)


class _Ids:
    """New request ids: this process's random half, then a count (a system call per request would cost
    more than the rest of this middleware); a forked child draws a half of its own."""

    def __init__(self) -> None:
        self.renew()
        os.register_at_fork(after_in_child=self.renew)

    def renew(self) -> None:
        self.prefix, self.count = os.urandom(4).hex(), itertools.count(int.from_bytes(os.urandom(4)))

    def new(self) -> str:
        return f"{self.prefix}{next(self.count) & 0xFFFFFFFF:08x}"


_ids = _Ids()


def request_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's ``X-Request-ID`` if it is a plain token; else a new one (16 hex digits)."""
    for name, value in headers:
        if name == b"x-request-id":
            if _TOKEN.fullmatch(value):
                return value.decode()
            break
    return _ids.new()


class Observe:
    def __init__(self, app: Any, *, access_log: bool = True) -> None:
        self.app, self.access_log = app, access_log
        self._series: dict[tuple[str, str, int], Any] = {}  # the histogram's children, kept: no lookup

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        seen = scope[SCOPE_KEY] = Observed(request_id_of(scope["headers"]))
        token = REQUEST_ID.set(seen.request_id)
        status = 500

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", ()), (b"x-request-id", seen.request_id.encode())]
                message = {**message, "headers": headers + seen.headers}
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or _UNMATCHED
            method = scope["method"] if scope["method"] in METHODS else "OTHER"  # a client's word: bounded
            key = (method, route, status)
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = metrics.REQUESTS.labels(method, route, str(status))
            series.observe(elapsed)
            if self.access_log:
                fields = {"method": method, "route": route, "status": status,
                          "duration_ms": round(elapsed * 1000, 2), "team": seen.team}  # fmt: skip
                log.info("request", extra={"fields": fields})
            REQUEST_ID.reset(token)


def install_metrics(app: FastAPI) -> None:
    """``GET /metrics``: open, or for ``Authorization: Bearer <PROCESSION_METRICS_TOKEN>`` when that is set."""
    services = app.state.services
    token = services.settings.metrics_token
    expected = f"Bearer {token.get_secret_value()}".encode() if token is not None else None

    @app.get("/metrics", include_in_schema=False)
    def prometheus(request: Request) -> Response:
        if expected is not None:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})
        body = metrics.exposition(services.engine)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
