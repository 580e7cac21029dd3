"""Which addresses outbound calls may reach: the networks inside (loopback, private, link-local, unique-local,
multicast, metadata, ...) are refused in every form an address can be written in, unless allowed."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# names that reach a cloud provider's instance metadata whatever they resolve to from here
METADATA_NAMES = frozenset(
    {"metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal"}
)


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
                    endpoints.add((normal_host(host), int(port)))
                elif entry and ":" not in entry:
                    names.add(normal_host(entry))
                else:
                    raise ValueError("not an address, a network, host:port or a name")
            except ValueError as e:
                raise ValueError(f"allowlist entry {entry!r}: {e}") from None
        return cls(tuple(networks), frozenset(endpoints), frozenset(names))

    def admits(self, host: str, ip: IPAddress | None, port: int) -> bool:
        """Whether a call to ``host`` (connecting to ``ip``, when known) on ``port`` is let through."""
        name = normal_host(host)
        if name in self.names or (name, port) in self.endpoints:
            return True
        return ip is not None and ((str(ip), port) in self.endpoints or any(ip in n for n in self.networks))


def normal_host(host: str) -> str:
    """A host as the allowlist compares it: an address in its canonical text, a name lower-case."""
    ip = literal_ip(host)
    return str(ip) if ip is not None else host.lower().removesuffix(".")


def url_parts(url: str) -> tuple[str, str, int]:
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
    url_parts(url)
