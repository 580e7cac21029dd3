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
import ipaddress
import re
import socket
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
import uvloop

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
DAY_MS = 86_400_000
DNS_TTL_S = 5.0  # an answer is reused this long at most: a host's addresses may move
KEEPALIVE_S = 4.0  # below the 5 s many servers keep an idle connection, so we rarely reuse one they close
REDIRECTS = frozenset({301, 302, 303, 307, 308})
CREDENTIALS = ("authorization", "proxy-authorization", "cookie")  # not carried to another origin
BODY_HEADERS = ("content-type", "content-length", "transfer-encoding")
# names that reach a cloud provider's instance metadata whatever they resolve to from here
METADATA_NAMES = frozenset(
    {"metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal"}
)


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


class Refused(Exception):
    """The address or URL is not allowed (the message says which and why), or the call cannot be made as
    written; trying again cannot help."""


class Unreachable(Exception):
    """No reply: a transient failure worth retrying. ``timed_out`` when the deadline cut the call."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


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


def _ranges(*table: tuple[str, str]) -> tuple[tuple[int, int, str], ...]:
    nets = [(ipaddress.ip_network(net), what) for net, what in table]
    return tuple((int(net[0]), int(net[-1]), what) for net, what in nets)


# first match wins, so a narrower network comes before the one holding it
_V4 = _ranges(
    ("0.0.0.0/32", "the unspecified address"),
    ("0.0.0.0/8", "a 'this network' address"),
    ("127.0.0.0/8", "a loopback address"),
    ("10.0.0.0/8", "a private address"),
    ("172.16.0.0/12", "a private address"),
    ("192.168.0.0/16", "a private address"),
    ("100.64.0.0/10", "a shared (CGNAT) address"),
    ("169.254.169.254/32", "the cloud metadata address"),
    ("169.254.0.0/16", "a link-local address"),
    ("224.0.0.0/4", "a multicast address"),
    ("255.255.255.255/32", "the broadcast address"),
    ("240.0.0.0/4", "a reserved address"),
    ("192.0.0.0/24", "an IETF protocol address"),
    ("192.0.2.0/24", "a documentation address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("192.88.99.0/24", "a 6to4 relay address"),
)
_V6 = _ranges(
    ("::/128", "the unspecified address"),
    ("::1/128", "a loopback address"),
    ("64:ff9b:1::/48", "a local-use NAT64 address"),
    ("fc00::/7", "a unique-local address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
    ("2001:db8::/32", "a documentation address"),
    ("2001::/23", "an IETF protocol address (Teredo among them)"),
)
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_COMPATIBLE = ipaddress.ip_network("::/96")


def _embedded(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries (mapped, compatible, NAT64, 6to4), which is where it leads."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64 or (ip in _COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def forbidden(ip: IPAddress) -> str | None:
    """Why a call may not go to this address (e.g. "127.0.0.1 is a loopback address"), or None."""
    inner = _embedded(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    what = _kind(inner if inner is not None else ip)
    if what is None:
        return None
    return f"{ip} is {what}" if inner is None else f"{ip} leads to {inner}, {what}"


def _kind(ip: IPAddress) -> str | None:
    n = int(ip)
    for low, high, what in _V4 if ip.version == 4 else _V6:
        if low <= n <= high:
            return what
    if ip.version == 6 and ip not in _GLOBAL_UNICAST_V6:
        return "not a global unicast address"
    return None


_NUMBER = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*")


def literal_ip(host: str) -> IPAddress | None:
    """The address a host names without DNS, in every form resolvers accept (``inet_aton``'s decimal, hex,
    octal and short forms, bracketed IPv6 with a zone), or None for a name to look up."""
    host = host.strip("[]").split("%", 1)[0]
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            return None
    parts = host.removesuffix(".").split(".")
    if len(parts) > 4 or not all(_NUMBER.fullmatch(p) for p in parts):
        return None
    numbers = [
        int(p[2:] or "0", 16) if p[:2] in ("0x", "0X") else int(p, 8 if p[0] == "0" else 10) for p in parts
    ]
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    for i, n in enumerate(head):
        last += n << (24 - 8 * i)
    return ipaddress.IPv4Address(last)


@dataclass(frozen=True)
class Allow:
    """Destinations let through although forbidden: networks (a single address is one), ``host:port``
    pairs (the host an address or a name) and bare names; for a test receiver or an internal service."""

    networks: tuple[IPNetwork, ...] = ()
    endpoints: frozenset[tuple[str, int]] = frozenset()
    names: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Allow:
        """From strings like "10.1.2.3", "10.0.0.0/8", "[::1]:8080", "127.0.0.1:9000", "hooks.internal"."""
        networks: list[IPNetwork] = []
        endpoints: set[tuple[str, int]] = set()
        names: set[str] = set()
        for entry in (e.strip() for e in entries):
            try:
                if "/" in entry:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                elif (ip := literal_ip(entry)) is not None and not entry.startswith("["):
                    networks.append(ipaddress.ip_network(ip))
                elif entry.count(":") == 1 or entry.startswith("["):
                    host, _, port = entry.rpartition(":")
                    endpoints.add((_normal(host), int(port)))
                elif entry and ":" not in entry:
                    names.add(_normal(entry))
                else:
                    raise ValueError("not an address, a network, host:port or a name")
            except ValueError as e:
                raise ValueError(f"allowlist entry {entry!r}: {e}") from None
        return cls(tuple(networks), frozenset(endpoints), frozenset(names))

    def admits(self, host: str, ip: IPAddress | None, port: int) -> bool:
        """Whether a call to ``host`` (connecting to ``ip``, when known) on ``port`` is let through."""
        name = _normal(host)
        if name in self.names or (name, port) in self.endpoints:
            return True
        return ip is not None and ((str(ip), port) in self.endpoints or any(ip in n for n in self.networks))


def _normal(host: str) -> str:
    """A host as the allowlist compares it: an address in its canonical text, a name lower-case."""
    ip = literal_ip(host)
    return str(ip) if ip is not None else host.lower().removesuffix(".")


def _parts(url: str) -> tuple[str, str, int]:
    """The scheme, host and port of an outbound URL, or a ValueError saying what is wrong with it."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"{url!r} is not a valid URL: {e}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"{url!r}: the scheme must be http or https, not {scheme or 'missing'}")
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host")
    if "@" in parts.netloc:
        raise ValueError(f"{url!r} carries credentials (user:pass@); send them in a header instead")
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80)


def check_url(url: str) -> None:
    """Raise ValueError for a URL that can never be called (what can be told without DNS), so an automation
    is refused when it is saved rather than failing at every run."""
    _parts(url)


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
        elif _normal(host) in METADATA_NAMES and not self._allow.admits(host, None, port):
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
            connection = await self._take(origin) or httpcore.AsyncHTTPConnection(
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
        """The origin's most recent idle connection still open, closing those found expired. The loop is
        single-threaded, so a connection found available here is still available when the request starts."""
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
            keep = [c for c in stack if c.is_available() and not c.has_expired()]
            self._idle_count -= len(stack) - len(keep)
            self._idle[key] = keep
            for connection in stack:
                if connection not in keep:
                    await connection.aclose()
            if not keep:
                del self._idle[key]

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
            _, host, port = _parts(url)
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
