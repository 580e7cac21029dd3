"""Update, list/search and history on SQLite and PostgreSQL: operators, paging, concurrency."""

from __future__ import annotations

import random
import threading

import pytest
import sqlalchemy as sa

from procession.domain.errors import BadRequest, Conflict, Invalid, NotFound
from procession.domain.process import ProcessChange
from procession.services.commands import (
    CreateProcess,
    EntityInput,
    ListProcesses,
    UpdateProcess,
)
from procession.services.configuration import define_entity
from procession.services.processes import create_process, update_process
from procession.services.reads import get_process, list_processes, process_history
from procession.store import batch
from procession.store import tables as t
from procession.store.repositories.schemas import Entities
from tests.conftest import Team, redefine


def create(team: Team, body: dict, procedure: str = "lead") -> dict:
    return team.services.run(create_process, team.caller, procedure, CreateProcess.model_validate(body))[1]


def update(team: Team, ref: tuple[str, ...], body: dict, version: int | None = None) -> dict:
    cmd = UpdateProcess.model_validate(body)
    return team.services.run(update_process, team.caller, "lead", ref, cmd, expected_version=version)


def search(team: Team, **body) -> tuple[list[dict], dict]:
    return team.services.run(
        list_processes,
        team.caller,
        "lead",
        ListProcesses.model_validate(body),
        cursor_key=team.services.cursor_key,
    )


def scores(team: Team, where: dict) -> list[int]:
    page, _ = search(team, where=where, sort=[{"field": "score"}], limit=100)
    return [p["data"].get("score") for p in page]


@pytest.fixture
def ten(team: Team) -> Team:
    for i in range(10):
        create(
            team,
            {
                "data": {"score": i, "city": "Goa" if i % 2 else "Pune", "source": f"s{i % 3}"},
                "status": "COMPLETED" if i >= 8 else "OPEN",
                "assignedTo": "shane.warne" if i < 3 else None,
            },
        )
    create(team, {"data": {"city": "Delhi"}})  # no score
    return team


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"score": 3}, [3]),
        ({"score": "3"}, [3]),
        ({"score": {"=": 3}}, [3]),
        ({"score": {"!=": 3}, "city": "Goa"}, [1, 5, 7, 9]),
        ({"score": {">": 7}}, [8, 9]),
        ({"score": {">=": 7}}, [7, 8, 9]),
        ({"score": {"<": 2}}, [0, 1]),
        ({"score": {"<=": 2}}, [0, 1, 2]),
        ({"score": {">": 2, "<": 5}}, [3, 4]),
        ({"score": [1, 4, 100]}, [1, 4]),
        ({"score": None}, [None]),
        ({"status": "COMPLETED"}, [8, 9]),
        ({"status": ["COMPLETED"], "score": {"!=": 8}}, [9]),
        ({"assignedTo": "shane.warne"}, [0, 1, 2]),
        ({"or": [{"score": 1}, {"score": 9}]}, [1, 9]),
        ({"and": [{"city": "Goa"}, {"or": [{"score": {"<": 3}}, {"source": "s2"}]}]}, [1, 5]),
        ({"city": "Pune", "or": [{"source": "s0"}, {"score": 2}]}, [0, 2, 6]),
        ({"state": "NEW", "score": {">=": 9}}, [9]),
    ],
)
def test_where_operators_and_nesting(ten: Team, where: dict, expected: list) -> None:
    assert scores(ten, where) == expected


def test_where_on_times_accepts_iso_and_epoch(ten: Team) -> None:
    page, _ = search(ten, limit=100)
    newest = max(p["createdAt"] for p in page)
    assert len(search(ten, where={"createdAt": {">=": newest}}, limit=100)[0]) >= 1
    assert search(ten, where={"createdAt": {">": "2999-01-01T00:00:00+05:30"}})[0] == []
    assert len(search(ten, where={"createdAt": {">": "2020-09-01T06:27:30+05:30"}}, limit=100)[0]) == 11


@pytest.mark.parametrize(
    "where",
    [
        {"score": {"~": 1}},
        {"nope": 1},
        {"or": []},
        {"score": "many"},
        {"status": "DONE"},
        {"assignedTo": "ghost"},
        {"or": {"a": 1}},
    ],
)
def test_malformed_where_is_invalid(ten: Team, where: dict) -> None:
    with pytest.raises(Invalid):
        search(ten, where=where)


def test_paging_to_the_end_has_no_duplicates_or_gaps(team: Team) -> None:
    rng = random.Random(7)
    with team.uow() as uow:
        lead = uow.procedures.get("lead")
    assert lead is not None
    ids = {
        create(team, {"data": {"score": rng.choice([None, 1, 2, 3])} if rng.random() < 0.9 else {}})["id"]
        for _ in range(120)
    }
    for sort in ([], [{"field": "score", "dir": "desc"}], [{"field": "score"}, {"field": "createdAt"}]):
        seen: list[str] = []
        cursor = None
        while True:
            page, meta = search(team, sort=sort, limit=13, cursor=cursor)
            seen += [p["id"] for p in page]
            cursor = meta["nextCursor"]
            if not meta["hasMore"]:
                break
        assert len(seen) == len(set(seen)) == 120 and set(seen) == ids, sort
    offset_pages = [p["id"] for skip in range(0, 120, 50) for p in search(team, skip=skip, limit=50)[0]]
    assert len(set(offset_pages)) == 120


def test_a_cursor_is_bound_to_its_query(ten: Team) -> None:
    _, meta = search(ten, limit=2)
    with pytest.raises(BadRequest, match="cursor"):  # a 400 invalid_cursor
        search(ten, limit=2, cursor=meta["nextCursor"], where={"city": "Goa"})
    with pytest.raises(BadRequest, match="cursor"):
        search(ten, cursor="garbage")


def test_deleted_processes_are_hidden_unless_asked_for(ten: Team) -> None:
    victim = search(ten, where={"score": 4})[0][0]
    update(ten, (victim["id"],), {"isDeleted": True})
    assert scores(ten, {"score": 4}) == []
    assert len(search(ten, where={"score": 4}, includeDeleted=True)[0]) == 1
    with pytest.raises(NotFound):
        update(ten, (victim["id"],), {"data": {"score": 5}})


def test_update_by_primary_key_and_primary_key_conflicts(team: Team) -> None:
    a, b = create(team, {}), create(team, {})
    out = update(team, ("lead_id", a["data"]["lead_id"]), {"data": {"lead_id": "LEAD-X"}})
    assert out["data"]["lead_id"] == "LEAD-X"
    with pytest.raises(Conflict):
        update(team, (b["id"],), {"data": {"lead_id": "LEAD-X"}})
    with pytest.raises(NotFound):
        update(team, ("score", "1"), {})


def test_an_update_writes_every_field_it_changes(team: Team) -> None:
    """What the update answers (built from the process in memory) is what a fresh read finds stored."""
    p = create(team, {"data": {"firstname": "Ted", "lastname": "Mosby"}})
    changes = [
        {"state": "IN_PROGRESS", "assignedTo": "shane.warne", "nextActionAt": 1616253910842},
        {"status": "COMPLETED", "data": {"lastname": "Evelyn", "score": 4}},  # a formula's input too
        {"status": "OPEN", "assignedTo": None, "data": {"lead_id": "LEAD-MOVED", "score": None}},
    ]
    for body in changes:
        answered = update(team, (p["id"],), body)
        stored = team.services.run(get_process, team.caller, "lead", (p["id"],))
        assert stored == answered
    assert stored["data"]["lead_id"] == "LEAD-MOVED" and stored["completedAt"] is None


def test_a_key_taken_by_a_concurrent_writer_is_a_conflict(team: Team) -> None:
    """The save reports the unique index as the API's 409 (duplicate_primary_key), not as the driver's own
    error (a 500), when the key was free as the rules checked it and taken by the time it is written."""
    a, b = create(team, {}), create(team, {})
    with team.uow() as uow:
        taken, lead = uow.processes.get(a["id"]), uow.procedures.get("lead")
        assert taken is not None and lead is not None and lead.primary_key is not None
        change = ProcessChange(data={lead.primary_key: b["data"]["lead_id"]})  # as an update racing b's
        events = taken.apply(lead, change, now=taken.updated_at + 1)
        with pytest.raises(Conflict) as refused:
            uow.processes.save(lead, taken, events, actor=None)
    assert refused.value.code == "duplicate_primary_key"


def test_the_batched_writer_writes_within_the_process_s_team(team: Team) -> None:
    p = create(team, {"data": {"score": 1}})
    with team.uow() as uow:
        stray, lead = uow.processes.get(p["id"]), uow.procedures.get("lead")
        assert stray is not None and lead is not None
        stray.team, stray.data = "another-team", {**stray.data, "x": 1}
        batch.run(uow.conn, batch.update_processes(uow.conn, lead, [stray], {"data.x"}))
        uow.commit()
    with team.uow() as uow:
        stored = uow.processes.get(p["id"])
    assert stored is not None and "x" not in stored.data


def test_a_new_primary_key_finds_the_processes_by_their_values(team: Team) -> None:
    pune, goa, _ = (
        create(team, {"data": {"city": "Pune"}}),
        create(team, {"data": {"city": "Goa"}}),
        create(team, {}),
    )
    redefine(team, "lead", primaryKey="city")
    assert update(team, ("city", "Pune"), {"data": {"score": 1}})["id"] == pune["id"]
    with pytest.raises(NotFound):  # the old key finds nothing now
        update(team, ("lead_id", pune["data"]["lead_id"]), {})
    with pytest.raises(Conflict):
        create(team, {"data": {"city": "Goa"}})
    redefine(team, "lead", primaryKey="lead_id")
    assert update(team, ("lead_id", goa["data"]["lead_id"]), {})["id"] == goa["id"]
    create(team, {"data": {"city": "Goa"}})  # two in Goa: city can no longer be the key
    with pytest.raises(Conflict):
        redefine(team, "lead", primaryKey="city")
    assert update(team, ("lead_id", goa["data"]["lead_id"]), {})["id"] == goa["id"]  # nothing changed


def test_a_definition_saved_over_a_newer_one_is_a_conflict_and_re_keys_nothing(team: Team) -> None:
    ted = {"record": {"data": {"phone_number": "7701214822", "email": "ted@example.com"}}}
    first = create(team, ted)
    with team.uow() as uow:
        customer = uow.entities.get("customer")
    assert customer is not None
    body = {k: v for k, v in customer.to_dict().items() if k in EntityInput.model_fields}
    with pytest.MonkeyPatch.context() as m:
        m.setattr(Entities, "save", lambda *_, **__: 0)  # another admin saved first
        with pytest.raises(Conflict):
            define = EntityInput.model_validate({**body, "primaryKey": "email"})
            team.services.run(define_entity, team.id, define, ref="customer")
    assert create(team, ted)["record"] == first["record"]  # still matched by phone number


def test_a_primary_key_value_is_at_most_500_characters(team: Team) -> None:
    long = create(team, {"data": {"city": "C" * 600}})
    with pytest.raises(Invalid):  # a key one of its processes' values cannot be
        redefine(team, "lead", primaryKey="city")
    assert update(team, ("lead_id", long["data"]["lead_id"]), {})["id"] == long["id"]  # nothing changed
    update(team, (long["id"],), {"data": {"city": "Lyon"}})
    redefine(team, "lead", primaryKey="city")
    assert create(team, {"data": {"city": "C" * 500}})["data"]["city"] == "C" * 500
    with pytest.raises(Invalid) as refused:
        create(team, {"data": {"city": "C" * 501}})
    assert refused.value.errors[0].field == "data.city"


def test_a_new_entity_key_matches_the_records_by_their_values(team: Team) -> None:
    ted = {"record": {"data": {"phone_number": "7701214822", "email": "ted@example.com"}}}
    first = create(team, ted)
    redefine(team, "customer", primaryKey="email")
    again = create(team, {"record": {"data": {"phone_number": "7701214823", "email": "ted@example.com"}}})
    assert again["record"] == first["record"]  # matched by the new key


def test_stale_versions_conflict_and_a_noop_writes_nothing(team: Team) -> None:
    p = create(team, {"data": {"score": 1}})
    same = update(team, (p["id"],), {"data": {"score": 1}})
    assert same["version"] == 1
    update(team, (p["id"],), {"data": {"score": 2}}, version=1)
    with pytest.raises(Conflict):
        update(team, (p["id"],), {"data": {"score": 3}}, version=1)
    with team.uow() as uow:
        assert [e.type for e in uow.events.for_process(p["id"])] == ["process.created", "process.updated"]


def test_concurrent_updates_of_different_attributes_lose_nothing(team: Team) -> None:
    p = create(team, {})
    attributes = ["source", "city", "country", "firstname", "lastname", "name"]
    errors: list[BaseException] = []

    def worker(attr: str) -> None:
        try:
            for i in range(8):
                update(team, (p["id"],), {"data": {attr: f"{attr}-{i}"}})
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(a,)) for a in attributes]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    with team.uow() as uow:
        final = uow.processes.get(p["id"])
        lead = uow.procedures.get("lead")
        history = uow.events.for_process(p["id"], limit=1000)
    assert final is not None and lead is not None
    assert {k: v for k, v in lead.to_short(final.data).items() if k != "lead_id"} == {
        a: f"{a}-7" for a in attributes
    }
    updates = [e for e in history if e.type == "process.updated"]
    assert len(updates) == len(attributes) * 8 == final.version - 1
    for attr in attributes:
        key = f"data.{lead.by_short[attr].id}"
        assert [e.payload["changes"][key][1] for e in updates if key in e.payload["changes"]] == [
            f"{attr}-{i}" for i in range(8)
        ]


def test_history_pages_in_commit_order(team: Team) -> None:
    p = create(team, {})
    for i in range(5):
        update(team, (p["id"],), {"data": {"score": i + 1}})
    first, meta = team.services.run(process_history, team.caller, "lead", (p["id"],), limit=4)
    rest, end = team.services.run(
        process_history, team.caller, "lead", (p["id"],), after=meta["nextAfter"], limit=4
    )
    assert [e["type"] for e in first + rest] == ["process.created"] + ["process.updated"] * 5
    assert [e["changes"]["data.score"]["new"] for e in (first + rest)[1:]] == [1, 2, 3, 4, 5]
    assert end["hasMore"] is False


def test_every_change_has_its_event(team: Team) -> None:
    p = create(team, {})
    update(team, (p["id"],), {"state": "IN_PROGRESS", "status": "CANCELLED", "assignedTo": "shane.warne"})
    with team.services.engine.connect() as conn:
        types = conn.scalars(
            sa.select(t.events.c.type).where(t.events.c.process_id == p["id"]).order_by(t.events.c.id)
        ).all()
    assert types == [
        "process.created",
        "process.updated",
        "process.state_changed",
        "process.status_changed",
        "process.assigned",
    ]
