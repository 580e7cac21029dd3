"""Outbound calls: inside addresses refused in every spelling without a packet sent, the allowlist, redirects
checked hop by hop, the deadline, dropped connections, replies worth a retry, the body bound."""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procession.connectors.addresses import check_url, forbidden, literal_ip
from procession.connectors.errors import Refused, Unreachable
from procession.connectors.outbound import Call, Outbound, Reply, retry_after_ms, transient
from tests.fakes.receiver import Drop, Hang, Receiver
from tests.fakes.receiver import Reply as Answer

INSIDE = [
    "127.0.0.1",
    "2130706433",
    "0x7f000001",
    "0177.0.0.1",
    "127.1",
    "localhost",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "metadata.google.internal",
    "100.64.0.1",
    "[fd00::1]",
    "[fe80::1]",
    "224.0.0.1",
    "0.0.0.0",
    "[::]",
]
REASONS = "loopback|private|link-local|metadata|shared|unique-local|multicast|unspecified"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture(autouse=True)
def fresh(receiver: Receiver) -> None:
    receiver.reset()


@pytest.fixture(scope="module")
def guarded() -> Iterator[Outbound]:
    with Outbound() as o:
        yield o


@pytest.fixture(scope="module")
def allowed() -> Iterator[Outbound]:
    with Outbound(allow=["127.0.0.1"], max_body=1000) as o:
        yield o


def call(
    outbound: Outbound,
    url: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    deadline_s: float = 2.0,
) -> Reply:
    return outbound.submit(Call(method, url, headers or {}, body, deadline_s)).result()


def unused_port() -> int:
    """A port on 127.0.0.1 with nothing listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("host", INSIDE)
def test_every_spelling_of_an_inside_address_is_refused_before_anything_is_sent(
    guarded: Outbound, receiver: Receiver, host: str
) -> None:
    with pytest.raises(Refused) as refused:
        call(guarded, f"http://{host}:{receiver.port}/x")
    assert re.search(REASONS, str(refused.value)), refused.value
    assert receiver.count() == 0


def test_refusals_name_the_address_and_the_reason(guarded: Outbound) -> None:
    with pytest.raises(Refused, match=r"^127\.0\.0\.1 is a loopback address$"):
        call(guarded, "http://127.0.0.1/")
    with pytest.raises(Refused, match=r"2130706433: 127\.0\.0\.1 is a loopback address"):
        call(guarded, "http://2130706433/")
    with pytest.raises(Refused, match=r"169\.254\.169\.254 is the cloud metadata address"):
        call(guarded, "http://169.254.169.254/latest/meta-data/")


def test_an_allowlisted_address_is_reached(allowed: Outbound, receiver: Receiver) -> None:
    reply = call(allowed, f"{receiver.url}/ok", method="POST", body=b"{}")
    assert (reply.status, reply.body, reply.truncated) == (200, b'{"ok": true, "n": 1}', False)
    assert reply.headers["content-type"] == "application/json"
    assert receiver.received("/ok")[0].method == "POST"


def test_a_host_port_entry_admits_that_port_only(receiver: Receiver) -> None:
    with Outbound(allow=[f"127.0.0.1:{receiver.port}"]) as exact, Outbound(allow=["127.0.0.1:1"]) as other:
        assert call(exact, f"{receiver.url}/a").status == 200
        with pytest.raises(Refused):
            call(other, f"{receiver.url}/a")
    assert receiver.count() == 1


def test_a_name_is_connected_to_the_address_judged_keeping_its_host_header(
    allowed: Outbound, guarded: Outbound, receiver: Receiver
) -> None:
    # the DNS answers, planted: the call connects to what was judged, never to a second lookup
    soon = time.monotonic() + 60
    allowed._guard._answers["hooks.test"] = (soon, (ipaddress.ip_address("127.0.0.1"),))
    guarded._guard._answers["split.test"] = (soon, tuple(map(ipaddress.ip_address, ["8.8.8.8", "10.0.0.1"])))
    assert call(allowed, f"http://hooks.test:{receiver.port}/named").status == 200
    assert receiver.received("/named")[0].headers["host"] == f"hooks.test:{receiver.port}"
    with pytest.raises(Refused, match=r"split\.test: 10\.0\.0\.1 is a private address"):
        call(guarded, "http://split.test/")


@pytest.mark.parametrize(
    "target", ["http://0.0.0.0:{port}/inside", "http://169.254.169.254/latest/meta-data/"]
)
def test_a_redirect_to_an_inside_address_is_refused(
    allowed: Outbound, receiver: Receiver, target: str
) -> None:
    receiver.redirect("/out", target.format(port=receiver.port))
    with pytest.raises(Refused):
        call(allowed, f"{receiver.url}/out")
    assert (receiver.count("/out"), receiver.count("/inside")) == (1, 0)


def test_a_redirect_within_the_allowlist_is_followed(allowed: Outbound, receiver: Receiver) -> None:
    receiver.redirect("/from", "/to")
    reply = call(allowed, f"{receiver.url}/from")
    assert (reply.status, receiver.count("/to")) == (200, 1)


def test_a_303_turns_a_post_into_a_get_without_a_body(allowed: Outbound, receiver: Receiver) -> None:
    receiver.redirect("/post", "/see", status=303)
    call(
        allowed,
        f"{receiver.url}/post",
        method="POST",
        body=b'{"a": 1}',
        headers={"content-type": "application/json"},
    )
    seen = receiver.received("/see")[0]
    assert (seen.method, seen.body, "content-type" in seen.headers) == ("GET", b"", False)


def test_credentials_stay_behind_when_a_redirect_leaves_the_origin(
    allowed: Outbound, receiver: Receiver
) -> None:
    with Receiver() as elsewhere:
        receiver.redirect("/auth", f"{elsewhere.url}/landed", status=307)
        call(allowed, f"{receiver.url}/auth", headers={"authorization": "Bearer secret", "x-trace": "1"})
        landed = elsewhere.received("/landed")[0]
    assert "authorization" not in landed.headers and landed.headers["x-trace"] == "1"
    assert receiver.received("/auth")[0].headers["authorization"] == "Bearer secret"


def test_past_max_redirects_the_redirect_itself_is_the_reply(receiver: Receiver) -> None:
    receiver.script("/loop", *[Answer(302, headers={"location": "/loop"})] * 3)
    with Outbound(allow=["127.0.0.1"], max_redirects=2) as outbound:
        reply = call(outbound, f"{receiver.url}/loop")
    assert (reply.status, receiver.count("/loop"), transient(reply.status)) == (302, 3, False)


def test_a_hanging_endpoint_is_cut_at_the_deadline_and_its_connection_closed(
    allowed: Outbound, receiver: Receiver
) -> None:
    receiver.script("/slow", Hang(10))
    started = time.monotonic()
    with pytest.raises(Unreachable) as cut:
        call(allowed, f"{receiver.url}/slow", deadline_s=0.3)
    elapsed = time.monotonic() - started
    assert cut.value.timed_out
    assert 0.3 <= elapsed < 0.3 + 0.25
    assert receiver.received("/slow")[0].hung_up.wait(1.0)  # the server saw the connection go


def test_a_dropped_connection_is_unreachable_after_the_endpoint_acted(
    allowed: Outbound, receiver: Receiver
) -> None:
    receiver.script("/drop", Drop())
    with pytest.raises(Unreachable) as dropped:
        call(allowed, f"{receiver.url}/drop", method="POST", body=b"{}")
    assert not dropped.value.timed_out
    assert receiver.count("/drop") == 1


def test_a_refused_connection_is_unreachable(allowed: Outbound) -> None:
    with pytest.raises(Unreachable) as refused:
        call(allowed, f"http://127.0.0.1:{unused_port()}/")
    assert not refused.value.timed_out


def test_a_failed_lookup_is_unreachable(guarded: Outbound) -> None:
    with pytest.raises(Unreachable):
        call(guarded, "http://no-such-host.invalid/")


def test_server_errors_and_throttling_come_back_as_replies_worth_a_retry(
    allowed: Outbound, receiver: Receiver
) -> None:
    receiver.script("/busy", Answer(500, b"oops"), Answer(429, headers={"retry-after": "2"}))
    error, throttled = call(allowed, f"{receiver.url}/busy"), call(allowed, f"{receiver.url}/busy")
    assert (error.status, error.body, transient(error.status)) == (500, b"oops", True)
    assert (throttled.status, transient(throttled.status)) == (429, True)
    assert retry_after_ms(throttled.headers, now_ms=0) == 2000


def test_a_large_body_is_cut_to_max_body(allowed: Outbound, receiver: Receiver) -> None:
    receiver.script("/big", Answer(200, b"x" * 200_000))
    reply = call(allowed, f"{receiver.url}/big")
    assert (len(reply.body), reply.truncated) == (1000, True)
    assert call(allowed, f"{receiver.url}/after").status == 200  # the pool goes on after a cut body


def test_cookies_set_by_one_endpoint_are_never_sent_again(allowed: Outbound, receiver: Receiver) -> None:
    receiver.script("/login", Answer(200, headers={"set-cookie": "session=abc; Path=/"}))
    call(allowed, f"{receiver.url}/login")
    call(allowed, f"{receiver.url}/next")
    assert "cookie" not in receiver.received("/next")[0].headers


def test_many_calls_from_many_threads_share_the_pool(allowed: Outbound, receiver: Receiver) -> None:
    results: list[int] = []

    def worker() -> None:
        futures = [allowed.submit(Call("POST", f"{receiver.url}/many", {}, b"{}", 5.0)) for _ in range(50)]
        results.extend(f.result().status for f in futures)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 200 and receiver.count("/many") == 200


def test_close_cancels_the_calls_still_running(receiver: Receiver) -> None:
    receiver.script("/held", Hang(10))
    outbound = Outbound(allow=["127.0.0.1"])
    future = outbound.submit(Call("GET", f"{receiver.url}/held", {}, None, 10.0))
    arrived_by = time.monotonic() + 2
    while receiver.count("/held") == 0 and time.monotonic() < arrived_by:
        time.sleep(0.005)
    outbound.close()
    assert future.cancelled()
    assert receiver.received("/held")[0].hung_up.wait(1.0)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "scheme must be http or https"),
        ("example.com/x", "scheme must be http or https"),
        ("http:///x", "has no host"),
        ("https://user:pass@example.com/", "credentials"),
        ("https://token@example.com/", "credentials"),
        ("http://example.com:99999/", "not a valid URL"),
    ],
)
def test_check_url_rejects_what_can_never_be_called(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_url(url)


def test_check_url_accepts_http_and_https() -> None:
    check_url("https://hooks.example.com/in?x=1")
    check_url("http://[2001:4860::8888]:8080/")


def test_retry_after_is_seconds_or_a_date_bounded_to_a_day() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    now_ms = int(now.timestamp() * 1000)
    in_90s = format_datetime(datetime(2026, 1, 1, 0, 1, 30, tzinfo=UTC), usegmt=True)
    assert retry_after_ms({"Retry-After": "7"}, now_ms) == 7000
    assert retry_after_ms({"retry-after": in_90s}, now_ms) == 90_000
    assert retry_after_ms({"retry-after": "Wed, 31 Dec 2025 00:00:00 GMT"}, now_ms) == 0
    assert retry_after_ms({"retry-after": "99999999"}, now_ms) == 86_400_000
    assert retry_after_ms({"retry-after": "soon"}, now_ms) is None
    assert retry_after_ms({}, now_ms) is None


def test_transient_statuses() -> None:
    assert [s for s in (200, 301, 400, 404, 408, 410, 425, 429, 500, 503, 599) if transient(s)] == [
        408,
        425,
        429,
        500,
        503,
        599,
    ]


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("::ffff:10.1.2.3", True),
        ("::127.0.0.1", True),  # IPv4-compatible
        ("64:ff9b::7f00:1", True),  # NAT64 of 127.0.0.1
        ("2002:a9fe:a9fe::1", True),  # 6to4 of 169.254.169.254
        ("2001:db8::1", True),
        ("ff02::1", True),
        ("255.255.255.255", True),
        ("::ffff:8.8.8.8", False),
        ("64:ff9b::808:808", False),
        ("2002:808:808::1", False),
        ("2606:4700:4700::1111", False),
        ("93.184.215.14", False),
    ],
)
def test_ipv6_forms_are_judged_by_the_ipv4_address_they_carry(address: str, refused: bool) -> None:
    assert (forbidden(ipaddress.ip_address(address)) is not None) == refused


INSIDE_NETWORKS = [
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
]
# first octets with no special-purpose block in them
GLOBAL_FIRST_OCTETS = [n for n in range(1, 224) if n not in (10, 100, 127, 169, 172, 192, 198, 203)]


def spellings(n: int) -> list[str]:
    """Ways a URL can write one IPv4 address, each of which a resolver reads as that address."""
    octets = ipaddress.IPv4Address(n).packed
    return [
        str(ipaddress.IPv4Address(n)),
        str(n),
        hex(n),
        ".".join(f"0{b:o}" for b in octets),
        f"{octets[0]}.{octets[1]}.{n & 0xFFFF}",
        f"[::ffff:{ipaddress.IPv4Address(n)}]",
        f"[::ffff:{n >> 16:x}:{n & 0xFFFF:x}]",
    ]


inside_addresses = st.sampled_from(INSIDE_NETWORKS).flatmap(
    lambda net: st.integers(int(net[0]), int(net[-1]))
)
global_addresses = st.tuples(st.sampled_from(GLOBAL_FIRST_OCTETS), st.integers(0, 2**24 - 1)).map(
    lambda t: t[0] << 24 | t[1]
)


@given(inside_addresses, st.integers(0, 6))
def test_an_inside_address_is_forbidden_in_every_spelling(n: int, form: int) -> None:
    ip = literal_ip(spellings(n)[form])
    assert ip is not None and forbidden(ip) is not None


@settings(max_examples=40)
@given(inside_addresses, st.integers(0, 6))
def test_the_call_path_refuses_an_inside_address_in_every_spelling(
    guarded: Outbound, n: int, form: int
) -> None:
    with pytest.raises(Refused):
        guarded.submit(Call("GET", f"http://{spellings(n)[form]}:9/", {}, None, 1.0)).result()


@given(global_addresses, st.integers(0, 6))
def test_a_global_address_is_allowed_in_every_spelling(n: int, form: int) -> None:
    ip = literal_ip(spellings(n)[form])
    assert ip is not None and forbidden(ip) is None
    assert ip == ipaddress.IPv4Address(n) or getattr(ip, "ipv4_mapped", None) == ipaddress.IPv4Address(n)
