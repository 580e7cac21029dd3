"""Webhook deliveries with plain objects: which subscriptions an event goes to, the message each sends (by
shortIds, signed so that the Standard Webhooks library verifies it), and how an attempt's reply is judged:
the rules of automation steps, a back-off capped at an hour, a last attempt when one is set."""

from __future__ import annotations

import orjson
import pytest
import standardwebhooks

from procession.connectors.outbound import Refused, Reply, Unreachable
from procession.domain.clock import now_ms
from procession.domain.process import ProcessChange
from procession.domain.webhooks import EVENT_TYPES, Subscription, iso, message, unknown_types, wanting
from procession.engine.deliveries import MAX_WAIT_MS, Sending, judge, signed_call
from procession.engine.steps import retry_wait_ms
from procession.engine.webhooks import event_view
from procession.store.repositories.deliveries import Delivery
from procession.store.repositories.webhooks import Webhook
from tests.unit.test_process import T1, create_with_events, lead

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NOW = 1_800_000_000_000


def hook(**changes: object) -> Webhook:
    fields = {
        "id": "w-1", "url": "https://hooks.example/in", "description": "", "event_types": ["process.created"],
        "secret": SECRET, "enabled": True, "timeout_ms": 10_000, "max_attempts": None, "backoff_ms": 1000,
        "failing_since": None, "disabled_at": None, "disabled_reason": None, "version": 1, "created_at": 0,
        "updated_at": 0,
    }  # fmt: skip
    return Webhook(**(fields | changes))  # type: ignore[arg-type]


def sending(attempts: int = 0, **changes: object) -> Sending:
    body = message("process.created", NOW, {"process": {"id": "p-1"}})
    delivery = Delivery(
        1, "w-1", "p-1", "v1:process.created", "process.created", "msg_abc", body, "RUNNING", attempts,
        None, NOW, NOW + 60_000, "me", "ref", NOW, None,
    )  # fmt: skip
    return Sending(delivery, hook(**changes))


def test_an_event_goes_to_the_subscriptions_that_want_its_type() -> None:
    a = Subscription("a", frozenset({"process.created", "run.failed"}))
    b = Subscription("b", frozenset({"process.updated"}))
    assert wanting([a, b], "process.created") == [a]
    assert wanting([a, b], "process.deleted") == []
    assert unknown_types(["process.created", "process.exploded", "job.finished"]) == [(1, "process.exploded")]
    assert {"run.failed", "job.finished", "webhook.disabled", "process.state_changed"} <= set(EVENT_TYPES)


def test_a_message_is_type_timestamp_and_data() -> None:
    sent = orjson.loads(message("process.created", NOW, {"x": 1}))
    assert sent == {"type": "process.created", "timestamp": "2027-01-15T08:00:00.000Z", "data": {"x": 1}}
    assert iso(0) == "1970-01-01T00:00:00.000Z"


def test_an_event_is_shown_by_short_ids() -> None:
    procedure = lead()
    process, _ = create_with_events()
    events = process.apply(procedure, ProcessChange(data={"a-score": 7}, state="s-prog"), now=T1)
    updated, moved = event_view(procedure, events[0], 2, "u-1"), event_view(procedure, events[1], 2, "u-1")
    assert updated["changes"]["data.score"] == {"old": None, "new": 7}
    assert updated["changes"]["state"] == {"old": "NEW", "new": "IN_PROGRESS"}
    assert moved == {
        "type": "process.state_changed", "version": 2, "actor": "u-1", "procedure": "lead",
        "from": "NEW", "to": "IN_PROGRESS",
    }  # fmt: skip


def test_a_call_is_signed_for_its_attempt_and_verifies() -> None:
    s, now = sending(), now_ms()
    call, recorded = signed_call(s, now, cut_ms=30_000)
    assert call.method == "POST" and call.url == "https://hooks.example/in" and call.deadline_s == 10
    assert call.headers["webhook-id"] == "msg_abc" and call.headers["webhook-timestamp"] == str(now // 1000)
    assert call.body is not None and call.body.decode() == s.delivery.body  # the same bytes every attempt
    verified = standardwebhooks.Webhook(SECRET).verify(call.body, call.headers)
    assert verified["type"] == "process.created"
    assert recorded["headers"] == {"webhook-id": "msg_abc", "webhook-timestamp": str(now // 1000)}
    assert SECRET not in repr(recorded) and SECRET not in repr(s)
    assert signed_call(s, now, cut_ms=4_000)[0].deadline_s == 4  # cut well inside the worker's lease


def reply(status: int, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, headers or {}, b"{}", False, 5)


def test_a_2xx_succeeds() -> None:
    s = sending()
    judge(s, reply(204), NOW, NOW + 5, {})
    assert s.ok and s.delivery.finished_at == NOW + 5 and s.attempt["outcome"] == "OK"


@pytest.mark.parametrize(
    "outcome",
    [
        reply(500),
        reply(503),
        reply(429),
        reply(408),
        Unreachable("reset"),
        Unreachable("slow", timed_out=True),
    ],
)
def test_what_may_pass_is_tried_again_after_a_back_off(outcome: Reply | BaseException) -> None:
    s = sending(attempts=2)
    judge(s, outcome, NOW, NOW + 5, {})
    assert s.delivery.status == "PENDING" and s.delivery.attempts == 3 and s.attempt["outcome"] == "RETRY"
    assert NOW + 5 + 3000 <= s.delivery.wake_at <= NOW + 5 + 5000  # 1 s doubled twice, give or take


@pytest.mark.parametrize("outcome", [reply(400), reply(404), reply(410), Refused("private"), ValueError("x")])
def test_what_cannot_pass_gives_the_delivery_up(outcome: Reply | BaseException) -> None:
    s = sending()
    judge(s, outcome, NOW, NOW + 5, {})
    assert s.delivery.status == "FAILED" and s.attempt["outcome"] == "FAILED" and s.delivery.finished_at


def test_the_last_attempt_gives_up_and_retry_after_is_honoured() -> None:
    s = sending(attempts=2, max_attempts=3)
    judge(s, reply(503), NOW, NOW, {})
    assert s.delivery.status == "FAILED" and "attempt 3 of 3" in (s.delivery.error or "")
    s = sending()
    judge(s, reply(429, {"Retry-After": "120"}), NOW, NOW, {})
    assert s.delivery.wake_at == NOW + 120_000


def test_the_back_off_doubles_up_to_its_cap() -> None:
    assert 750 <= retry_wait_ms(1000, 0, None) <= 1250
    assert 3000 <= retry_wait_ms(1000, 2, None) <= 5000
    assert retry_wait_ms(1000, 500, None, cap_ms=MAX_WAIT_MS) == MAX_WAIT_MS
    assert retry_wait_ms(1000, 0, 7000) == 7000
    assert retry_wait_ms(1000, 0, 10**12) == 24 * 3600 * 1000  # a Retry-After of years: a day
