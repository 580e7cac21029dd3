"""Requirements on SQLite and PostgreSQL: gates refuse a save (a request's, a bulk entry's) naming what is
unmet; moves carry a process on in the save's transaction, along the state graph, and trigger automations;
a cycle is an error of the save; the process API says what it meets and what blocks a move."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from procession.domain.errors import Invalid
from procession.services.commands import ProcedureInput
from procession.services.configuration import define_procedure, get_procedure
from procession.services.reads import process_requirements
from procession.services.templates import LEAD, TICKET
from tests.conftest import Team
from tests.fakes.receiver import Receiver
from tests.integration.automation import create, define, post, runs, update, work
from tests.integration.bulk import drain, entries, read, submit

RECORD = {"data": {"phone_number": "+33612345678", "email": "ada@example.com"}}
NO_EMAIL = {"data": {"phone_number": "+33612345679"}}
EMAIL_GATE = {
    "name": "has_email",
    "use": "gate",
    "state": "CONVERTED",
    "condition": "has(process.record.email) && process.record.email != ''",
    "message": "a converted lead needs an email",
}


def require(team: Team, requirements: list[dict[str, Any]], template: dict[str, Any] = LEAD) -> dict:
    current = team.services.run(get_procedure, team.id, template["shortId"])
    cmd = ProcedureInput.model_validate(
        {**template, "requirements": requirements, "version": current["version"]}
    )
    return team.services.run(define_procedure, team.id, cmd, ref=template["shortId"])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def test_a_ticket_that_meets_a_move_is_solved_on_save_and_its_automation_runs(
    team: Team, receiver: Receiver
) -> None:
    require(
        team,
        [
            {
                "name": "answered",
                "use": "move",
                "condition": "process.data.priority == 'low'",
                "state": "SOLVED",
            }
        ],
        TICKET,
    )
    define(
        team,
        {"trigger": {"type": "state_reached", "state": "SOLVED"}, "steps": [post(f"{receiver.url}/solved")]},
        procedure="ticket",
    )
    ticket = create(team, {"data": {"priority": "high"}}, procedure="ticket")
    assert ticket["state"] == "NEW"
    moved = update(team, ticket["id"], {"data": {"priority": "low"}}, procedure="ticket")
    assert moved["state"] == "SOLVED" and moved["version"] == ticket["version"] + 1  # one save, one version
    work(team)
    (run,) = runs(team)
    assert run["status"] == "SUCCEEDED" and receiver.count("/solved") == 1
    born_solved = create(team, {"data": {"priority": "low"}}, procedure="ticket")
    assert born_solved["state"] == "SOLVED"  # a create meets the moves too


def test_a_gate_refuses_converted_without_an_email_in_the_api_and_in_a_bulk_entry(team: Team) -> None:
    require(team, [EMAIL_GATE])
    without = create(team, {"record": NO_EMAIL})
    with pytest.raises(Invalid) as refused:
        update(team, without["id"], {"state": "CONVERTED", "data": {"score": 3}})
    (error,) = refused.value.errors
    assert error.code == "requirement_unmet" and error.field == "state"
    assert (
        "has_email" in error.message and "record.email" in error.message and "needs an email" in error.message
    )
    assert read(team, without["id"])["state"] == "NEW" and "score" not in read(team, without["id"])["data"]
    with_email = create(team, {"record": RECORD})
    assert update(team, with_email["id"], {"state": "CONVERTED"})["state"] == "CONVERTED"

    other = create(team, {"record": RECORD})
    job = submit(
        team,
        [
            {"id": without["id"], "state": "CONVERTED"},
            {
                "id": without["id"],
                "data": {"score": 9},
            },  # the same process, as it was: the refusal changed nothing
            {"id": other["id"], "state": "CONVERTED"},
        ],
    )
    drain(team)
    (failed,) = entries(team, job["id"], status="ERROR")
    assert "has_email" in str(failed) and "requirement_unmet" in str(failed)
    assert read(team, without["id"])["state"] == "NEW" and read(team, without["id"])["data"]["score"] == 9
    assert read(team, other["id"])["state"] == "CONVERTED"


def test_moves_cascade_in_order_and_a_cycle_is_an_error_of_the_save(team: Team) -> None:
    require(
        team,
        [
            {
                "name": "working",
                "use": "move",
                "condition": "process.data.score >= 10",
                "state": "IN_PROGRESS",
            },
            {"name": "won", "use": "move", "condition": "process.data.score >= 50", "state": "CONVERTED"},
        ],
    )
    lead = create(team, {})
    assert (
        update(team, lead["id"], {"data": {"score": 60}})["state"] == "CONVERTED"
    )  # NEW -> IN_PROGRESS -> CONVERTED
    history = [e["type"] for e in team.services.run(_events, team, lead["id"])]
    assert history.count("process.state_changed") == 2

    require(
        team,
        [
            {"name": "lost", "use": "move", "condition": "process.data.score < 0", "state": "LOST"},
            {"name": "back", "use": "move", "condition": "process.data.score < 0", "state": "NEW"},
        ],
    )
    lead = create(team, {})
    with pytest.raises(Invalid) as refused:
        update(team, lead["id"], {"data": {"score": -1}})
    assert refused.value.errors[0].code == "requirement_cycle"
    assert read(team, lead["id"]).get("data", {}).get("score") is None


def _events(uows: Any, team: Team, process_id: str) -> list[dict]:
    from procession.services.reads import process_history

    return process_history(uows, team.caller, "lead", (process_id,))[0]


def test_the_process_api_says_what_it_meets_and_what_blocks_a_move(team: Team) -> None:
    require(
        team,
        [
            EMAIL_GATE,
            {"name": "scored", "use": "gate", "status": "COMPLETED", "condition": "process.data.score > 0"},
        ],
    )
    lead = create(team, {"record": NO_EMAIL})
    found = team.services.run(process_requirements, team.caller, "lead", (lead["id"],))
    assert {r["name"]: r["met"] for r in found["requirements"]} == {"has_email": False, "scored": False}
    assert found["blockedStates"] == {"CONVERTED": ["has_email"]}
    assert found["blockedStatuses"] == {"COMPLETED": ["scored"]}
    assert "CONVERTED" in found["allowedStates"] and "NEW" not in found["allowedStates"]
    assert found["requirements"][0]["reads"] == ["record.email"]


@pytest.mark.parametrize(
    ("requirement", "field", "code"),
    [
        (
            {"name": "x", "use": "gate", "state": "NOPE", "condition": "true"},
            "requirements[0].state",
            "unknown_state",
        ),
        (
            {"name": "x", "use": "gate", "condition": "process.data.nope > 1"},
            "requirements[0].condition",
            "unknown_attribute",
        ),
        (
            {"name": "x", "use": "gate", "condition": "process.record.nope > 1"},
            "requirements[0].condition",
            "unknown_attribute",
        ),
        ({"name": "x", "use": "move", "condition": "true"}, "requirements[0]", "no_target"),
        (
            {"name": "x", "use": "gate", "condition": "process.data.score >"},
            "requirements[0].condition",
            "invalid_expression",
        ),
        ({"name": "x", "use": "sometimes", "condition": "true"}, "requirements[0].use", "invalid_value"),
    ],
)
def test_a_requirement_naming_what_does_not_exist_is_refused_when_saved(
    team: Team, requirement: dict, field: str, code: str
) -> None:
    with pytest.raises(Invalid) as refused:
        require(team, [requirement])
    assert (code, field) in [(e.code, e.field) for e in refused.value.errors]
    assert team.services.run(get_procedure, team.id, "lead")["requirements"] == []
