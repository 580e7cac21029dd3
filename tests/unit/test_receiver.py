"""The fake receiver: it records each request, answers as scripted per path, holds and drops on demand."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.receiver import Drop, Hang, Receiver, Reply


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def client(receiver: Receiver) -> Iterator[httpx.Client]:
    receiver.reset()
    with httpx.Client(base_url=receiver.url) as c:
        yield c


def test_it_answers_200_with_the_count_for_the_path_and_records_the_request(
    receiver: Receiver, client: httpx.Client
) -> None:
    assert client.post("/a", content=b"one", headers={"X-Thing": "1"}).json() == {"ok": True, "n": 1}
    assert client.get("/a").json() == {"ok": True, "n": 2}
    assert client.get("/b").json() == {"ok": True, "n": 1}
    first = receiver.received("/a")[0]
    assert (first.method, first.path, first.body, first.headers["x-thing"]) == ("POST", "/a", b"one", "1")
    assert (receiver.count(), receiver.count("/a")) == (3, 2)


def test_a_script_is_used_in_order_then_the_default(receiver: Receiver, client: httpx.Client) -> None:
    receiver.script("/s", Reply(500, b"down"), Reply(429, headers={"Retry-After": "1"}))
    first, second, third = (client.get("/s") for _ in range(3))
    assert (first.status_code, first.content) == (500, b"down")
    assert (second.status_code, second.headers["retry-after"]) == (429, "1")
    assert third.json() == {"ok": True, "n": 3}


def test_redirect(receiver: Receiver, client: httpx.Client) -> None:
    receiver.redirect("/r", "/there")
    reply = client.get("/r")
    assert (reply.status_code, reply.headers["location"]) == (302, "/there")


def test_a_hang_holds_the_request_then_answers(receiver: Receiver, client: httpx.Client) -> None:
    receiver.script("/h", Hang(0.2))
    reply = client.get("/h")
    assert reply.json() == {"ok": True, "n": 1} and reply.elapsed.total_seconds() >= 0.2
    assert not receiver.received("/h")[0].hung_up.is_set()


def test_a_hang_notices_the_sender_hanging_up(receiver: Receiver, client: httpx.Client) -> None:
    receiver.script("/h", Hang(10))
    with pytest.raises(httpx.ReadTimeout):
        client.get("/h", timeout=0.2)
    assert receiver.received("/h")[0].hung_up.wait(1.0)


def test_a_drop_records_the_request_and_closes_without_a_reply(
    receiver: Receiver, client: httpx.Client
) -> None:
    receiver.script("/d", Drop())
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/d", content=b"acted")
    assert receiver.received("/d")[0].body == b"acted"
    assert client.get("/d").json() == {"ok": True, "n": 2}


def test_keys_counts_idempotency_keys_or_webhook_ids(receiver: Receiver, client: httpx.Client) -> None:
    for key in ("k1", "k1", "k2"):
        client.post("/k", headers={"Idempotency-Key": key})
    client.post("/w", headers={"webhook-id": "msg_1"})
    client.post("/w")
    assert receiver.keys("/k") == {"k1": 2, "k2": 1}
    assert receiver.keys() == {"k1": 2, "k2": 1, "msg_1": 1}


def test_reset_forgets_requests_and_scripts(receiver: Receiver, client: httpx.Client) -> None:
    receiver.script("/x", Reply(500))
    client.get("/y")
    receiver.reset()
    assert receiver.count() == 0 and client.get("/x").status_code == 200
