"""The connection pool of outbound calls: per origin, kept alive a little, each new connection made only to
an address resolved and judged where the socket opens (``_Guard``)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import httpcore
import httpx

from procession.connectors.addresses import (
    METADATA_NAMES,
    Allow,
    IPAddress,
    forbidden,
    literal_ip,
    normal_host,
)
from procession.connectors.errors import Refused, Unreachable

DNS_TTL_S = 5.0  # an answer is reused this long at most: a host's addresses may move
KEEPALIVE_S = 4.0  # below the 5 s many servers keep an idle connection, so we rarely reuse one they close


class _Guard(httpcore.AsyncNetworkBackend):
    """The pool's network backend: a new connection goes only to an address resolved and judged here."""

    def __init__(self, allow: Allow) -> None:
        self._allow = allow
        self._inner = httpcore.AnyIOBackend()
        self._answers: dict[str, tuple[float, tuple[IPAddress, ...]]] = {}

    def screen(self, host: str, port: int) -> IPAddress | None:
        """Refuse a host judged without DNS (a metadata name, a forbidden literal); its address if literal."""
        ip = literal_ip(host)
        if ip is not None:
            self._judge(host, ip, port)
        elif normal_host(host) in METADATA_NAMES and not self._allow.admits(host, None, port):
            raise Refused(f"{host} is a cloud metadata name")
        return ip

    def _judge(self, host: str, ip: IPAddress, port: int) -> None:
        reason = forbidden(ip)
        if reason and not self._allow.admits(host, ip, port):
            raise Refused(reason if host.strip("[]").lower() == str(ip) else f"{host}: {reason}")

    async def addresses(self, host: str, port: int) -> tuple[IPAddress, ...]:
        """The addresses to try for a host, every one judged: one forbidden answer refuses the host."""
        literal = self.screen(host, port)
        if literal is not None:
            return (literal,)
        now = time.monotonic()
        expires, ips = self._answers.get(host, (0.0, ()))
        if expires <= now:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as e:
                raise Unreachable(f"{host}: DNS lookup failed ({e})") from None
            ips = tuple(dict.fromkeys(ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos))
            if len(self._answers) > 10_000:
                self._answers.clear()
            self._answers[host] = (now + DNS_TTL_S, ips)
        for ip in ips:
            self._judge(host, ip, port)
        return ips

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        failure: Exception = Unreachable(f"{host}: no address to connect to")
        for ip in await self.addresses(host, port):
            try:
                return await self._inner.connect_tcp(str(ip), port, timeout, local_address, socket_options)
            except httpcore.ConnectError as e:
                failure = e
        raise failure

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _Pool:
    """Kept-alive connections by origin, in place of httpcore's pool, whose every request rescans all its
    connections and queued requests (encode/httpcore#1035: throughput collapses past a few dozen
    connections). Here a request takes its origin's most recent idle connection or opens one. At most
    ``size`` requests are in flight, and at most ``size`` idle connections are kept."""

    def __init__(self, guard: _Guard, size: int, keepalive_s: float) -> None:
        self._guard, self._size, self._keepalive_s = guard, size, keepalive_s
        self._ssl = httpx.create_ssl_context(trust_env=False)
        self._slots = asyncio.Semaphore(size)
        self._idle: dict[tuple[bytes, bytes, int], list[httpcore.AsyncHTTPConnection]] = {}
        self._idle_count = 0
        self._next_sweep = 0.0

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        origin = request.url.origin
        await self._slots.acquire()
        connection = None
        try:
            await self._sweep()
            connection = await self._take(origin)
            if connection is not None:
                try:
                    response = await connection.handle_async_request(request)
                except httpcore.ConnectionNotAvailable:  # it closed, or began another request, meanwhile
                    await connection.aclose()
                    connection = None
            if connection is None:
                connection = httpcore.AsyncHTTPConnection(
                    origin, self._ssl, self._keepalive_s, network_backend=self._guard
                )
                response = await connection.handle_async_request(request)
        except BaseException:
            self._slots.release()
            if connection is not None:
                await connection.aclose()
            raise
        assert isinstance(response.stream, AsyncIterable)
        body = _Body(response.stream, lambda: self._give_back(origin, connection))
        return httpcore.Response(
            response.status, headers=response.headers, content=body, extensions=response.extensions
        )

    async def _take(self, origin: httpcore.Origin) -> httpcore.AsyncHTTPConnection | None:
        """The origin's most recent idle connection still open, closing those found expired. Its list is only
        ever changed in place (``_sweep`` too), so that a connection is in one list once: taken from a list
        another had replaced meanwhile, it would be taken again from the new one while in use."""
        stack = self._idle.get(_key(origin))
        while stack:
            connection = stack.pop()
            self._idle_count -= 1
            if connection.is_available() and not connection.has_expired():
                return connection
            await connection.aclose()
        return None

    async def _give_back(self, origin: httpcore.Origin, connection: httpcore.AsyncHTTPConnection) -> None:
        self._slots.release()
        if connection.is_available() and self._idle_count < self._size:
            self._idle.setdefault(_key(origin), []).append(connection)
            self._idle_count += 1
        else:
            await connection.aclose()

    async def _sweep(self) -> None:
        """Close idle connections past their keep-alive or closed by the server, once a keep-alive period."""
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self._keepalive_s
        for key, stack in list(self._idle.items()):
            gone = [c for c in stack if not c.is_available() or c.has_expired()]
            stack[:] = [c for c in stack if c not in gone]  # in place: see ``_take``
            self._idle_count -= len(gone)
            if not stack and self._idle.get(key) is stack:
                del self._idle[key]
            for connection in gone:
                await connection.aclose()

    async def aclose(self) -> None:
        idle, self._idle, self._idle_count = self._idle, {}, 0
        for stack in idle.values():
            for connection in stack:
                await connection.aclose()


def _key(origin: httpcore.Origin) -> tuple[bytes, bytes, int]:
    return origin.scheme, origin.host, origin.port


class _Body:
    """A response body that gives its connection back to the pool once closed."""

    def __init__(self, stream: AsyncIterable[bytes], done: Callable[[], Awaitable[None]]) -> None:
        self._stream, self._done, self._closed = stream, done, False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            closer = getattr(self._stream, "aclose", None)  # httpcore's bodies have one
            if closer is not None:
                await closer()
        finally:
            await self._done()


class _Transport(httpx.AsyncHTTPTransport):
    """httpx's transport (its request and error mapping) over ``_Pool``."""

    def __init__(self, pool: _Pool) -> None:
        super().__init__(trust_env=False)
        self._pool = pool  # type: ignore[assignment]
