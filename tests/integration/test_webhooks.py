"""Webhook subscriptions on SQLite and PostgreSQL against a local receiver: deliveries registered with their
save (none for a rolled-back one), sent in order per process through an outage, each signed so that the
Standard Webhooks library verifies it; replayed one by one or all failed together; a subscription failing
for too long disabled, with an event; run failures and finished jobs delivered; the secret never shown again
nor logged."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
import standardwebhooks

from procession.domain.clock import now_ms
from procession.domain.errors import NotFound
from procession.engine.deliveries import WebhookDeliveries
from procession.engine.tasks import Kinds, run_task
from procession.services.automations import run_automation
from procession.services.commands import CreateProcess
from procession.services.processes import create_in
from procession.services.webhooks import (
    ReplayFailed,
    WebhookInput,
    WebhookUpdate,
    create_webhook,
    get_delivery,
    get_webhook,
    list_deliveries,
    list_webhooks,
    replay_delivery,
    replay_failed,
    update_webhook,
)
from procession.store import tables as t
from tests.conftest import Team
from tests.fakes.receiver import Hang, Received, Receiver, Reply
from tests.integration.automation import create, define, post, update, work
from tests.integration.bulk import submit

PROCESS_EVENTS = ["process.created", "process.updated", "process.state_changed", "process.deleted"]
QUICK = {"backoffSeconds": 0.02}
FINISHED = ("SUCCEEDED", "FAILED")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def subscribe(team: Team, url: str, events: list[str] | None = None, **more: Any) -> dict[str, Any]:
    body = {"url": url, "eventTypes": events or PROCESS_EVENTS, "retry": QUICK} | more
    return team.services.run(create_webhook, team.id, WebhookInput.model_validate(body))


def deliveries(team: Team, hook: dict[str, Any], status: str | None = None) -> list[dict[str, Any]]:
    """The subscription's deliveries, oldest first."""
    found = team.services.run(list_deliveries, team.id, hook["id"], status=status, limit=500)
    return list(reversed(found))


def deliver(team: Team, *, kinds: Kinds | None = None, until: float = 30.0) -> None:
    """Run the team's due tasks, as a worker does, until every delivery of the team has finished."""
    deadline, c, d = time.monotonic() + until, t.tasks.c, t.webhook_deliveries.c
    while True:
        with team.services.engine.connect() as conn:
            due = conn.scalars(
                sa.select(c.id)
                .where(c.team_id == team.id, c.status == "PENDING", c.wake_at <= now_ms())
                .order_by(c.wake_at, c.id)
            ).all()
            left = conn.scalar(
                sa.select(sa.func.count()).where(d.team_id == team.id, d.status.not_in(FINISHED))
            )
        for task_id in due:
            run_task(team.services.uows, kinds or team.services.kinds, task_id)
        if not due and not left:
            return
        assert time.monotonic() < deadline, f"{left} deliveries unfinished"
        if not due:
            time.sleep(0.01)


def verified(secret: str, request: Received) -> dict[str, Any]:
    """The message of a request whose signature the Standard Webhooks library verifies."""
    return standardwebhooks.Webhook(secret).verify(request.body, request.headers)  # type: ignore[no-any-return]


def test_an_endpoint_down_for_a_while_gets_every_event_once_in_order_each_signed(
    team: Team, receiver: Receiver
) -> None:
    receiver.script("/hook", *[Reply(503)] * 5, Reply(429, headers={"retry-after": "0"}), Reply(500))
    hook = subscribe(team, f"{receiver.url}/hook")
    leads = [create(team) for _ in range(3)]
    for n, lead in enumerate(leads):
        update(team, lead["id"], {"data": {"score": n}})
        update(team, lead["id"], {"state": "CONVERTED"})
    update(team, leads[0]["id"], {"isDeleted": True})
    deliver(team)

    sent = deliveries(team, hook)
    assert {d["status"] for d in sent} == {"SUCCEEDED"}
    failed = 7
    requests = receiver.received("/hook")
    assert len(requests) == len(sent) + failed
    answered = requests[failed:]  # the endpoint is back: each of these got a 200
    assert sorted(r.headers["webhook-id"] for r in answered) == sorted(d["messageId"] for d in sent)
    by_process: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for request in answered:
        message = verified(hook["secret"], request)
        event, process = message["data"]["event"], message["data"]["process"]
        assert message["type"] == event["type"] and message["timestamp"].endswith("Z")
        by_process[process["id"]].append((event["type"], event["version"]))
    assert by_process[leads[1]["id"]] == [
        ("process.created", 1),
        ("process.updated", 2),
        ("process.updated", 3),
        ("process.state_changed", 3),
    ]
    assert by_process[leads[0]["id"]][-2:] == [("process.updated", 4), ("process.deleted", 4)]
    retried = [a for d in sent for a in d["attempts"] if a["outcome"] == "RETRY"]
    assert len(retried) == failed and {a["statusCode"] for a in retried} == {503, 429, 500}
    assert all(len({a["request"]["headers"]["webhook-id"] for a in d["attempts"]}) == 1 for d in sent)
    assert team.services.run(get_webhook, team.id, hook["id"])["failingSince"] is None


def test_workers_side_by_side_keep_a_process_s_order(team: Team, receiver: Receiver) -> None:
    receiver.script("/hook", *[Hang(0.01)] * 40)  # slow enough for the workers to overlap
    hook = subscribe(team, f"{receiver.url}/hook", ["process.created", "process.updated"])
    leads = [create(team)["id"] for _ in range(2)]
    for n in range(10):
        for lead in leads:
            update(team, lead, {"data": {"score": n}})  # a save, a task, each
    workers = [threading.Thread(target=deliver, args=(team,)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    seen: dict[str, list[int]] = defaultdict(list)
    for request in receiver.received("/hook"):
        message = verified(hook["secret"], request)
        seen[message["data"]["process"]["id"]].append(message["data"]["event"]["version"])
    assert seen == {lead: list(range(1, 12)) for lead in leads}


def test_a_delivery_shows_the_process_by_shortids_and_what_changed(team: Team, receiver: Receiver) -> None:
    hook = subscribe(team, f"{receiver.url}/hook", ["process.state_changed", "process.updated"])
    lead = create(team, {"data": {"score": 3}})
    update(team, lead["id"], {"state": "CONVERTED", "data": {"score": 9}})
    deliver(team)
    changed, moved = (verified(hook["secret"], r) for r in receiver.received("/hook"))
    assert changed["type"] == "process.updated" and moved["type"] == "process.state_changed"
    assert changed["data"]["event"]["changes"]["data.score"] == {"old": 3, "new": 9}
    assert moved["data"]["event"]["from"] == "NEW" and moved["data"]["event"]["to"] == "CONVERTED"
    assert moved["data"]["process"]["state"] == "CONVERTED" and moved["data"]["process"]["data"]["score"] == 9


def test_a_rolled_back_save_delivers_nothing_and_a_committed_one_always_does(
    team: Team, receiver: Receiver
) -> None:
    hook = subscribe(team, f"{receiver.url}/hook", ["process.created"])
    with team.uow() as uow:
        create_in(uow, team.caller, "lead", CreateProcess())  # never committed
    assert deliveries(team, hook) == []
    lead = create(team)
    (registered,) = deliveries(team, hook)
    assert registered["status"] == "PENDING" and registered["subject"] == lead["id"]
    deliver(team)
    assert receiver.count("/hook") == 1


def test_a_bulk_job_delivers_the_events_of_each_entry_once_in_order(team: Team, receiver: Receiver) -> None:
    hook = subscribe(team, f"{receiver.url}/hook", ["process.updated"])
    leads = [create(team)["id"] for _ in range(3)]
    items = [{"id": lead, "data": {"score": n}} for n, lead in enumerate(leads)]
    submit(team, [*items, {"id": leads[0], "data": {"score": 50}}])
    deliver(team)
    seen: dict[str, list[int]] = defaultdict(list)
    for request in receiver.received("/hook"):
        message = verified(hook["secret"], request)
        seen[message["data"]["process"]["id"]].append(message["data"]["event"]["version"])
    assert seen == {leads[0]: [2, 3], leads[1]: [2], leads[2]: [2]}
    assert set(receiver.keys("/hook").values()) == {1}


def test_a_failed_delivery_is_replayed_with_the_same_message_id(team: Team, receiver: Receiver) -> None:
    receiver.script("/hook", Reply(400, b"bad"))
    hook = subscribe(team, f"{receiver.url}/hook", ["process.created"])
    create(team)
    deliver(team)
    (delivery,) = deliveries(team, hook)
    assert delivery["status"] == "FAILED" and "HTTP 400" in delivery["error"]
    replayed = team.services.run(replay_delivery, team.id, hook["id"], delivery["id"])
    assert replayed["status"] == "PENDING" and "body" in replayed
    deliver(team)
    done = team.services.run(get_delivery, team.id, hook["id"], delivery["id"])
    assert done["status"] == "SUCCEEDED"
    assert [(a["outcome"], a["statusCode"]) for a in done["attempts"]] == [("FAILED", 400), ("OK", 200)]
    assert done["attempts"][0]["excerpt"] == "bad"
    assert list(receiver.keys("/hook").values()) == [2]  # one message id, sent twice


def test_the_failed_deliveries_of_a_subscription_are_replayed_together_in_order(
    team: Team, receiver: Receiver
) -> None:
    receiver.script("/hook", *[Reply(503)] * 3)
    hook = subscribe(team, f"{receiver.url}/hook", retry={"maxAttempts": 1, "backoffSeconds": 0})
    lead = create(team)
    update(team, lead["id"], {"data": {"score": 1}})
    update(team, lead["id"], {"data": {"score": 2}})
    deliver(team)
    assert [d["status"] for d in deliveries(team, hook)] == ["FAILED"] * 3  # each given up, the next sent
    with pytest.raises(NotFound):
        team.services.run(replay_failed, team.id, "nope", ReplayFailed())
    assert team.services.run(replay_failed, team.id, hook["id"], ReplayFailed()) == {
        "id": hook["id"],
        "replayed": 3,
    }
    deliver(team)
    assert [d["status"] for d in deliveries(team, hook)] == ["SUCCEEDED"] * 3
    again = [verified(hook["secret"], r)["data"]["event"]["version"] for r in receiver.received("/hook")[3:]]
    assert again == [1, 2, 3]


def test_a_subscription_failing_too_long_is_disabled_and_the_team_told(
    team: Team, receiver: Receiver
) -> None:
    receiver.script("/down", *[Reply(503)] * 1000)
    hook = subscribe(team, f"{receiver.url}/down", ["process.created"])
    watcher = subscribe(team, f"{receiver.url}/watch", ["webhook.disabled"])
    svc = team.services
    impatient = Kinds(
        WebhookDeliveries(lambda: svc.outbound, lease_seconds=60, disable_after_seconds=0.3).kind()
    )
    create(team)
    create(team)
    deliver(team, kinds=impatient)

    shown = svc.run(get_webhook, team.id, hook["id"])
    assert shown["enabled"] is False and shown["disabledAt"] is not None
    assert "failed" in shown["disabledReason"]
    assert {d["status"] for d in deliveries(team, hook)} == {"FAILED"}
    assert any(d["error"] == "the subscription was disabled" for d in deliveries(team, hook))
    with svc.engine.connect() as conn:
        c = t.events.c
        told = conn.execute(
            sa.select(c.type, c.payload).where(c.team_id == team.id, c.process_id == hook["id"])
        )
        ((kind, payload),) = told.all()
    assert kind == "webhook.disabled" and payload["webhook"]["id"] == hook["id"]
    (notice,) = receiver.received("/watch")
    assert verified(watcher["secret"], notice)["data"]["webhook"]["enabled"] is False
    create(team)  # while disabled: nothing for it
    assert len(deliveries(team, hook)) == 2

    receiver.reset()
    svc.run(update_webhook, team.id, hook["id"], WebhookUpdate(enabled=True))
    assert svc.run(replay_failed, team.id, hook["id"], ReplayFailed())["replayed"] == 2
    deliver(team)
    assert {d["status"] for d in deliveries(team, hook)} == {"SUCCEEDED"}
    assert svc.run(get_webhook, team.id, hook["id"])["disabledAt"] is None


def test_a_failed_run_and_a_finished_job_are_delivered(team: Team, receiver: Receiver) -> None:
    receiver.script("/crm", Reply(404))
    hook = subscribe(team, f"{receiver.url}/hook", ["run.failed", "job.finished"])
    automation = define(team, {"trigger": {"type": "manual"}, "steps": [post(f"{receiver.url}/crm")]})
    lead = create(team)
    team.services.run(run_automation, team.caller, "lead", lead["id"], automation["id"])
    job = submit(team, [{"data": {"score": 1}}], kind="create")
    work(team)
    deliver(team)
    messages = {m["type"]: m for m in (verified(hook["secret"], r) for r in receiver.received("/hook"))}
    assert len(receiver.received("/hook")) == 2
    failed, finished = messages["run.failed"], messages["job.finished"]
    assert failed["type"] == "run.failed" and failed["data"]["run"]["processId"] == lead["id"]
    assert "HTTP 404" in failed["data"]["run"]["error"]
    assert finished["type"] == "job.finished" and finished["data"]["job"]["id"] == job["id"]
    assert finished["data"]["job"]["status"] == "COMPLETED"


def test_the_secret_is_shown_once_and_never_logged(
    team: Team, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("procession", "httpx", "httpcore"):  # the service's own lines and its outbound calls'
        caplog.set_level(logging.DEBUG, logger=name)
    receiver.script("/hook", Reply(500), Reply(400))
    hook = subscribe(team, f"{receiver.url}/hook", ["process.created", "process.updated"])
    secret = hook["secret"]
    assert secret.startswith("whsec_")
    lead = create(team)
    update(team, lead["id"], {"data": {"score": 1}})
    deliver(team)
    svc = team.services
    shown = [
        svc.run(get_webhook, team.id, hook["id"]),
        svc.run(list_webhooks, team.id),
        svc.run(update_webhook, team.id, hook["id"], WebhookUpdate(description="crm")),
        svc.run(list_deliveries, team.id, hook["id"]),
        *(svc.run(get_delivery, team.id, hook["id"], d["id"]) for d in deliveries(team, hook)),
    ]
    assert secret not in orjson.dumps(shown).decode()
    assert secret not in caplog.text
    assert all(secret not in r.body.decode() for r in receiver.received())
