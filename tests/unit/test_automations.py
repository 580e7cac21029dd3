"""Automations as data (checked whole when saved) and when their triggers fire, with plain objects."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procession.connectors.addresses import check_url
from procession.domain.automations import Automation, parse_automation
from procession.domain.errors import Invalid
from procession.domain.procedure import Procedure
from procession.domain.process import Process, ProcessChange
from procession.domain.triggers import fires
from tests.unit.test_process import T0, lead

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def child() -> Procedure:
    return Procedure(
        id="pr-visit", short_id="visit", label="Visit", attributes=lead().attributes[:1], parent="pr-lead"
    )


def parse(body: dict[str, Any], version: int = 1) -> Automation:
    procedure = lead()
    procedures = {p.short_id: p for p in (procedure, child())} | {p.id: p for p in (procedure, child())}
    return parse_automation(
        {"name": "a", **body},
        procedure,
        id="auto-1",
        version=version,
        procedures=procedures,
        check_url=check_url,
    )


FULL = {
    "trigger": {"type": "state_reached", "state": "CONVERTED"},
    "condition": "process.data.score > 10",
    "steps": [
        {"name": "post", "type": "http", "url": "https://crm.example/{{ process.id }}", "method": "put",
         "headers": {"X-Lead": "{{ process.data.email }}"}, "body": "{'score': process.data.score}",
         "expect": [200, 201], "timeoutSeconds": 2, "when": "process.status == 'OPEN'"},
        {"name": "hook", "type": "webhook", "url": "https://hooks.example/in", "secret": SECRET},
        {"name": "mark", "type": "update_process", "data": {"score": "steps.post.score + 1"}, "state": "LOST"},
        {"name": "visit", "type": "create_process", "procedure": "visit", "data": {"firstname": "'Ted'"}},
        {"name": "later", "type": "wait", "until": "now + 60000"},
    ],
    "retry": {"maxAttempts": 3, "backoffSeconds": 0.5},
    "concurrency": 4,
}  # fmt: skip


def test_a_saved_automation_keeps_ids_and_reads_back_the_same() -> None:
    automation = parse(FULL)
    assert automation.trigger.state == "s-conv"
    assert automation.steps[0].config["method"] == "PUT" and automation.steps[0].timeout_ms == 2000
    assert automation.steps[2].config == {"data": {"a-score": "steps.post.score + 1"}, "state": "s-lost"}
    assert automation.steps[3].config["procedure"] == "pr-visit"
    assert (automation.max_attempts, automation.backoff_ms, automation.concurrency) == (3, 500, 4)
    assert Automation.from_stored(automation.stored()) == automation


def test_the_public_form_speaks_short_ids_and_hides_secrets() -> None:
    public = parse(FULL).public(lead())
    assert public["trigger"]["state"] == "CONVERTED"
    assert public["steps"][1]["secret"] == "whsec_********"
    assert (
        public["steps"][2]["data"] == {"score": "steps.post.score + 1"}
        and public["steps"][2]["state"] == "LOST"
    )


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"trigger": {"type": "someday"}}, "trigger.type", "unknown_trigger"),
        ({"trigger": {"type": "state_reached", "state": "WON"}}, "trigger.state", "unknown_state"),
        ({"trigger": {"type": "status_reached", "status": "DONE"}}, "trigger.status", "unknown_status"),
        ({"trigger": {"type": "date_offset", "attribute": "score"}}, "trigger.attribute", "not_a_date"),
        ({"trigger": {"type": "attribute_changed", "attribute": "nope"}}, "trigger.attribute", "unknown_attribute"),
        ({"trigger": {"type": "created"}}, "steps", "no_steps"),
        ({"steps": [{"type": "ftp"}]}, "steps[0].type", "unknown_step"),
        ({"steps": [{"type": "http", "url": "ftp://x/"}]}, "steps[0].url", "invalid_url"),
        ({"steps": [{"type": "http", "url": "https://u:p@x/"}]}, "steps[0].url", "invalid_url"),
        ({"steps": [{"type": "http", "url": "https://x/", "timeoutSeconds": 99}]}, "steps[0].timeoutSeconds", "invalid_value"),
        ({"steps": [{"type": "http", "url": "https://x/", "expect": ["ok"]}]}, "steps[0].expect", "invalid_value"),
        ({"steps": [{"type": "http", "url": "https://x/", "colour": 1}]}, "steps[0].colour", "unknown_field"),
        ({"steps": [{"type": "webhook", "url": "https://x/", "secret": "hunter2"}]}, "steps[0].secret", "invalid_secret"),
        ({"steps": [{"type": "wait"}]}, "steps[0]", "invalid_wait"),
        ({"steps": [{"type": "wait", "seconds": -1}]}, "steps[0].seconds", "invalid_value"),
        ({"steps": [{"type": "update_process", "data": {"fullname": "'x'"}}]}, "steps[0].data.fullname", "unknown_attribute"),
        ({"steps": [{"type": "update_process", "status": "GONE"}]}, "steps[0].status", "unknown_status"),
        ({"steps": [{"type": "create_process", "procedure": "lead"}]}, "steps[0].procedure", "not_a_child"),
        ({"steps": [{"name": "x", "type": "wait", "seconds": 1}] * 2}, "steps[1].name", "duplicate_step"),
        ({"steps": [{"name": "1st", "type": "wait", "seconds": 1}]}, "steps[0].name", "invalid_name"),
        ({"condition": "process.data.score >"}, "condition", "invalid_expression"),
        ({"steps": [{"type": "http", "url": "https://x/{{ process.id + }}"}]}, "steps[0].url", "invalid_expression"),
        ({"steps": [{"type": "http", "url": "https://x/", "when": 3}]}, "steps[0].when", "invalid_expression"),
    ],
)  # fmt: skip
def test_each_mistake_is_a_422_naming_where_it_is(body: dict[str, Any], field: str, code: str) -> None:
    body = {"trigger": {"type": "manual"}} | body
    with pytest.raises(Invalid) as caught:
        parse(body)
    assert (code, field) in {(e.code, e.field) for e in caught.value.errors}


def test_every_mistake_is_reported_at_once() -> None:
    with pytest.raises(Invalid) as caught:
        parse({"trigger": {"type": "someday"}, "condition": "1 +",
               "steps": [{"type": "http", "url": "ftp://x"}, {"type": "wait"}]})  # fmt: skip
    assert {e.field for e in caught.value.errors} == {"trigger.type", "condition", "steps[0].url", "steps[1]"}


# --- when triggers fire: against a plain model of the process's states ------------------------------------

STATES = ["s-new", "s-prog", "s-conv", "s-lost"]
moves = st.lists(
    st.fixed_dictionaries(
        {
            "state": st.sampled_from(STATES),
            "status": st.sampled_from(["OPEN", "COMPLETED"]),
            "score": st.integers(0, 3),
        }
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(first=moves, trigger=st.sampled_from(["state", "status", "score", "score_to_2", "created"]))
def test_a_trigger_fires_once_for_each_save_that_reaches_its_target(
    first: list[dict[str, Any]], trigger: str
) -> None:
    procedure = lead()
    procedure.transitions = {s: [t for t in STATES if t != s] for s in STATES}  # any move
    body = {
        "state": {"type": "state_reached", "state": "CONVERTED"},
        "status": {"type": "status_reached", "status": "COMPLETED"},
        "score": {"type": "attribute_changed", "attribute": "score"},
        "score_to_2": {"type": "attribute_changed", "attribute": "score", "to": 2},
        "created": {"type": "created"},
    }[trigger]
    automation = parse({"trigger": body, "steps": [{"type": "wait", "seconds": 1}]})
    start, *later = first
    change = ProcessChange(
        data={"a-first": "Ted", "a-score": start["score"]}, state=start["state"], status=start["status"]
    )
    process, events = Process.create(procedure, change, id="p", team="t", created_by=None, now=T0)
    fired = [_fires(automation, events, process, procedure)]
    expected = [_model(trigger, None, start)]
    before = start
    for n, move in enumerate(later, start=1):
        change = ProcessChange(data={"a-score": move["score"]}, state=move["state"], status=move["status"])
        events = process.apply(procedure, change, now=T0 + n)
        fired.append(_fires(automation, events, process, procedure))
        expected.append(_model(trigger, before, move))
        before = move
    assert fired == expected


def _fires(automation: Automation, events: list[Any], process: Process, procedure: Procedure) -> int:
    """How many runs a save's events register for the automation (the follow-up's rule: any that fires)."""
    return int(any(fires(automation.trigger, e, process, procedure) is not None for e in events))


def _model(trigger: str, before: dict[str, Any] | None, now: dict[str, Any]) -> int:
    """A run when the save reaches the target: it holds now and did not before (or the process is new)."""
    if trigger == "created":
        return int(before is None)
    if trigger == "state":
        return int(now["state"] == "s-conv" and (before is None or before["state"] != "s-conv"))
    if trigger == "status":
        return int(now["status"] == "COMPLETED" and (before is None or before["status"] != "COMPLETED"))
    changed = before is None or before["score"] != now["score"]
    return int(changed and (trigger == "score" or now["score"] == 2))
