"""Create Process on SQLite and PostgreSQL: the store, records, generated ids, events, idempotency."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from procession.api.deps import request_hash
from procession.domain.errors import Conflict, Invalid, NotFound
from procession.services.commands import CreateProcess
from procession.services.idempotency import Once
from procession.services.processes import create_process
from procession.store import tables as t
from tests.conftest import Team

TED = {
    "data": {"firstname": "Ted", "lastname": "Mosby", "score": 5},
    "record": {"data": {"phone_number": "7701214822", "email": "ted.mosby@yahoo.com"}},
    "status": "COMPLETED",
    "state": "CONVERTED",
    "nextActionAt": 1618558867539,
    "assignedTo": "rahul.dravid",
}


def create(team: Team, body: dict, procedure: str = "lead") -> dict:
    return team.services.run(create_process, team.caller, procedure, CreateProcess.model_validate(body))[1]


def events_of(team: Team, process_id: str) -> list[str]:
    with team.uow() as uow:
        return [e.type for e in uow.events.for_process(process_id)]


def test_ted_mosby_is_created_with_record_state_status_and_assignment(team: Team) -> None:
    p = create(team, TED)
    assert p["data"] == {"firstname": "Ted", "lastname": "Mosby", "score": 5, "lead_id": "LEAD-911"}
    assert p["derivedData"] == {"full_name": "Ted Mosby"}
    assert (p["status"], p["state"]) == ("COMPLETED", "CONVERTED")
    assert p["completedAt"] == p["createdAt"] and p["cancelledAt"] is None
    with team.uow() as uow:
        rahul = uow.users.id_of("rahul.dravid")
        record = uow.records.get(p["record"])
        stored = uow.processes.get(p["id"])
    assert p["assignedTo"] == p["firstAssignedTo"] == rahul
    assert p["firstAssignedAt"] == p["lastAssignedAt"] == p["createdAt"]
    assert p["createdBy"] == team.caller.user_id
    assert record is not None and record["entity_id"] == p["entity"]
    assert stored is not None and stored.status == "COMPLETED" and stored.next_action_at == 1618558867539
    assert events_of(team, p["id"]) == ["process.created", "process.assigned"]


def test_generated_ids_count_up_and_the_record_is_matched_by_primary_key(team: Team) -> None:
    first, second = (
        create(team, TED),
        create(team, {**TED, "record": {"data": {"phone_number": "7701214822", "name": "Ted  Mosby"}}}),
    )
    assert (first["data"]["lead_id"], second["data"]["lead_id"]) == ("LEAD-911", "LEAD-912")
    assert first["record"] == second["record"]
    with team.uow() as uow:
        record = uow.records.get(first["record"])
        entity = uow.entities.get("customer")
    assert record is not None and entity is not None
    assert entity.to_short(record["data"]) == {
        "phone_number": "7701214822",
        "email": "ted.mosby@yahoo.com",
        "name": "Ted Mosby",
    }


def test_defaults_are_open_and_the_initial_state(team: Team) -> None:
    p = create(team, {})
    assert (p["status"], p["state"], p["assignedTo"], p["record"]) == ("OPEN", "NEW", None, None)
    assert events_of(team, p["id"]) == ["process.created"]


def test_duplicate_primary_key_is_a_conflict_and_writes_nothing(team: Team) -> None:
    create(team, {"data": {"lead_id": "LEAD-1"}})
    with pytest.raises(Conflict) as caught:
        create(team, {"data": {"lead_id": "LEAD-1"}})
    assert caught.value.code == "duplicate_primary_key"
    with team.services.engine.connect() as conn:
        count = conn.scalar(
            sa.select(sa.func.count()).select_from(t.processes).where(t.processes.c.team_id == team.id)
        )
    assert count == 1


def test_invalid_values_report_every_field_and_write_nothing(team: Team) -> None:
    body = {
        "data": {"score": "lots", "nope": 1, "city": 7},
        "state": "FLYING",
        "assignedTo": "nobody",
        "record": {"data": {"phone_number": "7701214822"}},
    }
    with pytest.raises(Invalid) as caught:
        create(team, body)
    fields = {e.field for e in caught.value.errors}
    assert {"data.score", "data.nope", "data.city", "state", "assignedTo"} <= fields
    with team.services.engine.connect() as conn:
        for table in (t.processes, t.records):
            assert (
                conn.scalar(sa.select(sa.func.count()).select_from(table).where(table.c.team_id == team.id))
                == 0
            )


def test_unknown_procedure_is_not_found(team: Team) -> None:
    with pytest.raises(NotFound):
        create(team, {}, procedure="nope")


def test_parent_process_must_belong_to_the_parent_procedure(team: Team) -> None:
    ticket, lead = create(team, {}, "ticket"), create(team, {})
    visit = create(team, {"parentProcess": ticket["id"]}, "fieldvisit")
    assert visit["parentProcess"] == ticket["id"] and visit["parentProcedure"] == ticket["procedure"]
    with pytest.raises(Invalid):
        create(team, {"parentProcess": lead["id"]}, "fieldvisit")
    with pytest.raises(Invalid):
        create(team, {"parentProcess": ticket["id"]}, "lead")


def test_another_teams_references_are_invisible(team: Team, team_factory) -> None:
    other = team_factory()
    theirs = create(other, {}, "ticket")
    with pytest.raises(Invalid):
        create(team, {"parentProcess": theirs["id"]}, "fieldvisit")
    with team.uow() as uow:
        assert uow.processes.get(theirs["id"]) is None


def test_idempotency_replays_the_first_answer_and_refuses_another_body(team: Team) -> None:
    def submit(body: dict) -> tuple[int, dict]:
        cmd = CreateProcess.model_validate(body)
        once = Once("key-1", request_hash("create lead", cmd))
        return team.services.run(create_process, team.caller, "lead", cmd, once=once)

    first, again = submit({"data": {"score": 1}}), submit({"data": {"score": 1}})
    assert first == again
    with pytest.raises(Conflict):
        submit({"data": {"score": 2}})


def test_concurrent_creates_get_distinct_generated_ids(team: Team) -> None:
    ids: list[str] = []

    def worker() -> None:
        for _ in range(10):
            ids.append(create(team, {"data": {"score": 1}})["data"]["lead_id"])

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(ids) == 40 and len(set(ids)) == 40
