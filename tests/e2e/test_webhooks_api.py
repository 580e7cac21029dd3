"""Webhook subscriptions over HTTP against a real server (and, on PostgreSQL, a real worker) calling a local
receiver: created with a secret shown once, listed, read, changed and removed by admins; deliveries followed
with their attempts and replayed; bad input a 4xx, never a 500."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import standardwebhooks

from tests.e2e.conftest import Api
from tests.fakes.receiver import Receiver, Reply

WEBHOOKS = "/v1/admin/webhooks"
LEADS = "/v1/ext/procedure/lead/process"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def until(found: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := found()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def subscribe(api: Api, url: str, **more: Any) -> dict[str, Any]:
    body = {"url": url, "eventTypes": ["process.created"], "retry": {"backoffSeconds": 0.05}} | more
    r = api.http.post(WEBHOOKS, json=body)
    assert r.status_code == 201, r.text
    return r.json()["_data"]


def deliveries(api: Api, hook_id: str, **params: Any) -> list[dict[str, Any]]:
    r = api.http.get(f"{WEBHOOKS}/{hook_id}/deliveries", params=params)
    assert r.status_code == 200, r.text
    return r.json()["_data"]


def test_a_subscription_is_created_with_its_secret_once_then_read_changed_and_removed(
    api: Api, receiver: Receiver
) -> None:
    hook = subscribe(api, f"{receiver.url}/hook", description="crm")
    secret, url = hook.pop("secret"), f"{WEBHOOKS}/{hook['id']}"
    assert secret.startswith("whsec_") and hook["enabled"] is True and hook["version"] == 1
    replies = [api.http.get(WEBHOOKS), api.http.get(url)]
    assert [w["id"] for w in replies[0].json()["_data"]] == [hook["id"]]
    assert replies[1].json()["_data"] == hook

    changed = api.http.put(url, json={"eventTypes": ["process.created", "job.finished"], "version": 1})
    assert changed.status_code == 200, changed.text
    assert changed.json()["_data"]["eventTypes"] == ["process.created", "job.finished"]
    assert changed.json()["_data"]["url"] == hook["url"]  # what was not sent stays
    stale = api.http.put(url, json={"description": "x", "version": 1})
    assert stale.status_code == 409 and stale.json()["_errors"][0]["field"] == "version"
    replies += [changed, stale, api.http.put(url, json={"enabled": False}), api.http.get(url)]
    assert replies[-1].json()["_data"]["enabled"] is False and replies[-1].json()["_data"]["disabledAt"]
    assert all(secret not in r.text for r in replies)

    assert api.http.delete(url).status_code == 200
    assert api.http.get(url).status_code == 404
    assert api.http.get(f"{url}/deliveries").status_code == 404


def test_bad_subscriptions_are_refused_naming_the_field(api: Api) -> None:
    r = api.http.post(WEBHOOKS, json={"url": "ftp://x.example/in", "eventTypes": ["process.created", "nope"]})
    assert r.status_code == 422, r.text
    assert {e["field"] for e in r.json()["_errors"]} == {"url", "eventTypes.1"}
    assert api.http.post(WEBHOOKS, json={"url": "https://x.example", "eventTypes": []}).status_code == 422
    assert api.http.post(WEBHOOKS, json={"url": "https://x.example"}).status_code == 422
    missing = f"{WEBHOOKS}/00000000-0000-0000-0000-000000000000"
    assert api.http.get(missing).status_code == 404
    assert api.http.post(f"{missing}/deliveries/1/replay").status_code == 404
    with api.client(api.team.key(role="member")) as member:
        assert member.get(WEBHOOKS).status_code == 403


def test_deliveries_arrive_signed_are_followed_and_replayed(api: Api, receiver: Receiver) -> None:
    receiver.script("/hook", Reply(503), Reply(400))
    hook = subscribe(api, f"{receiver.url}/hook")
    lead = api.http.post(LEADS, json={"data": {}}).json()["_data"]
    (failed,) = until(lambda: deliveries(api, hook["id"], status="FAILED"), "the delivery to give up")
    assert [(a["outcome"], a["statusCode"]) for a in failed["attempts"]] == [("RETRY", 503), ("FAILED", 400)]
    assert failed["subject"] == lead["id"] and failed["eventType"] == "process.created"

    at = f"{WEBHOOKS}/{hook['id']}/deliveries/{failed['id']}"
    replayed = api.http.post(f"{at}/replay")
    assert replayed.status_code == 202, replayed.text
    until(lambda: api.http.get(at).json()["_data"]["status"] == "SUCCEEDED", "the replay")
    requests = receiver.received("/hook")
    assert len(requests) == 3 and len({r.headers["webhook-id"] for r in requests}) == 1
    message = standardwebhooks.Webhook(hook["secret"]).verify(requests[-1].body, requests[-1].headers)
    assert message["data"]["process"]["id"] == lead["id"]
    assert api.http.get(at).json()["_data"]["body"] == requests[-1].body.decode()

    again = api.http.post(f"{WEBHOOKS}/{hook['id']}/replay-failed")
    assert again.status_code == 202 and again.json()["_data"]["replayed"] == 0
