"""Calls from the service to endpoints outside it, made safe: no call reaches an address inside the network
(SSRF), a deadline covers the whole call, the body read is bounded, and redirects are checked hop by hop.

Errors a caller can get, and what each means for a retry::

    Refused        the address or URL is not allowed, or the call cannot be made as written: never retried
    Unreachable    no reply: refused or reset connection, a connection dropped mid-reply, a DNS failure,
                   or the deadline (``timed_out``): transient, retried
    (a Reply)      any HTTP status, 3xx past ``max_redirects`` included; ``transient(status)`` tells

The address check is made where the socket is opened (``_Guard``, the connection pool's network backend):
the host is resolved there, every answer judged, and the connection made to a judged address, so a DNS
answer cannot change between the check and the connect, and a name's other forms (decimal, hex, octal,
IPv4-mapped IPv6) meet the same check. The pool keys connections by host name, so TLS verifies the name
in the URL and a kept-alive connection is never shared between two names on one address.
"""

from __future__ import annotations

import asyncio
import email.utils
import http.cookiejar
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC

import httpx
import uvloop

from procession.connectors.addresses import Allow, check_url, url_parts
from procession.connectors.errors import Refused, Unreachable
from procession.connectors.pool import KEEPALIVE_S, _Guard, _Pool, _Transport

__all__ = ["Call", "Outbound", "Refused", "Reply", "Unreachable", "check_url"]  # what callers need, here

DAY_MS = 86_400_000
REDIRECTS = frozenset({301, 302, 303, 307, 308})
CREDENTIALS = ("authorization", "proxy-authorization", "cookie")  # not carried to another origin
BODY_HEADERS = ("content-type", "content-length", "transfer-encoding")


@dataclass(frozen=True)
class Call:
    """One outbound HTTP call; ``deadline_s`` bounds all of it: DNS, connect, redirects, reading the body."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    deadline_s: float


@dataclass(frozen=True)
class Reply:
    """What came back: header names in lower case, at most ``max_body`` bytes of the body."""

    status: int
    headers: dict[str, str]
    body: bytes
    truncated: bool
    duration_ms: int


def transient(status: int) -> bool:
    """Whether a reply with this status may succeed if sent again later."""
    return status in (408, 425, 429) or 500 <= status <= 599


def retry_after_ms(headers: Mapping[str, str], now_ms: int) -> int | None:
    """The wait a ``Retry-After`` header asks for (delta seconds or an HTTP date; ``now_ms`` is Unix ms),
    bounded to [0, 1 day] so a wrong or hostile value can neither hurry nor park a retry."""
    value = next((v.strip() for k, v in headers.items() if k.lower() == "retry-after"), None)
    if not value:
        return None
    if value.isascii() and value.isdigit():
        wait = int(value) * 1000
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        wait = round(when.timestamp() * 1000) - now_ms
    return min(max(wait, 0), DAY_MS)


def _next_hop(
    method: str, body: bytes | None, headers: dict[str, str], status: int, same_origin: bool
) -> tuple[str, bytes | None, dict[str, str]]:
    """The request a redirect asks for: after a 303 (and a 301 or 302 answering a POST) a GET without a
    body, as browsers do; credentials stay behind when the redirect leaves the origin."""
    drop: tuple[str, ...] = () if same_origin else CREDENTIALS
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method, body, drop = "GET", None, drop + BODY_HEADERS
    return method, body, {k: v for k, v in headers.items() if k.lower() not in drop}


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


class Outbound:
    """Outbound HTTP for the whole process: one event loop on its own thread and one pooled client, so
    thousands of calls a second share kept-alive connections; ``submit`` from any thread."""

    def __init__(
        self,
        *,
        allow: Sequence[str] = (),
        max_redirects: int = 5,
        max_body: int = 64 * 1024,
        max_connections: int = 200,
    ) -> None:
        self._guard = _Guard(Allow.parse(allow))
        self._max_redirects = max_redirects
        self._max_body = max_body
        self._client = httpx.AsyncClient(
            transport=_Transport(_Pool(self._guard, max_connections, keepalive_s=KEEPALIVE_S)),
            follow_redirects=False,  # followed in ``_follow``, each hop checked
            trust_env=False,  # no proxy from the environment
            timeout=None,  # the call's deadline covers everything
            # a cookie set by one endpoint must never travel to another call (another team's)
            cookies=http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[])),
            # an uncompressed body: a compressed one could expand far past max_body within one chunk
            headers={"user-agent": "procession", "accept-encoding": "identity"},
        )
        self._loop = uvloop.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="procession-outbound", daemon=True
        )
        self._thread.start()

    def __enter__(self) -> Outbound:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, call: Call) -> Future[Reply]:
        """Start a call on the outbound loop, from any thread; the future gives the Reply or raises."""
        return asyncio.run_coroutine_threadsafe(self.send(call), self._loop)

    async def send(self, call: Call) -> Reply:
        """Make a call, on the outbound loop. When the deadline passes the call is cancelled: its connection
        is closed and nothing of it runs on."""
        if asyncio.get_running_loop() is not self._loop:
            raise RuntimeError("Outbound.send runs on the outbound's own loop; call submit() instead")
        started = time.monotonic()
        what = f"{call.method} {call.url}"
        try:
            async with asyncio.timeout(call.deadline_s):
                return await self._follow(call, started)
        except TimeoutError:
            raise Unreachable(f"{what}: no reply within {call.deadline_s:g} s", timed_out=True) from None
        except (httpx.LocalProtocolError, httpx.UnsupportedProtocol, httpx.InvalidURL) as e:
            raise Refused(f"{what}: {e}") from None
        except httpx.TransportError as e:
            raise Unreachable(f"{what}: {type(e).__name__}: {e or 'connection failed'}") from None

    def close(self) -> None:
        """Cancel the calls still running, close the pool's connections and stop the loop."""
        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _shutdown(self) -> None:
        running = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await self._client.aclose()

    def _target(self, url: str) -> httpx.URL:
        """The URL to request, refused early when its host can be judged without DNS."""
        try:
            _, host, port = url_parts(url)
            self._guard.screen(host, port)
            return httpx.URL(url)
        except (ValueError, httpx.InvalidURL) as e:
            raise Refused(str(e)) from None

    async def _follow(self, call: Call, started: float) -> Reply:
        method, url, headers, body = call.method.upper(), call.url, call.headers, call.body
        hops = 0
        while True:
            target = self._target(url)
            request = self._client.build_request(method, target, headers=headers, content=body)
            response = await self._client.send(request, stream=True)
            try:
                location = response.headers.get("location")
                if response.status_code in REDIRECTS and location and hops < self._max_redirects:
                    following = target.join(location)
                    same = _origin(following) == _origin(target)
                    method, body, headers = _next_hop(method, body, headers, response.status_code, same)
                    hops, url = hops + 1, str(following)
                    continue
                content, truncated = await self._read(response)
            finally:
                await response.aclose()
            duration_ms = round((time.monotonic() - started) * 1000)
            return Reply(
                response.status_code, dict(response.headers.items()), content, truncated, duration_ms
            )

    async def _read(self, response: httpx.Response) -> tuple[bytes, bool]:
        """At most ``max_body`` bytes of the body, and whether there was more (left unread)."""
        data = bytearray()
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) > self._max_body:
                return bytes(data[: self._max_body]), True
        return bytes(data), False
