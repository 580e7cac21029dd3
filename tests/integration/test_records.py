"""Records as first-class, on SQLite and PostgreSQL: listed and searched with the process list's language and
cursor, read and updated by id and by primary key, a record's processes; within the caller's team."""

from __future__ import annotations

import pytest

from procession.domain.errors import BadRequest, Conflict, Invalid, NotFound
from procession.services.commands import ListRecords, RecordProcesses, UpdateRecord
from procession.services.records import read_record, record_processes, search_records, update_record
from tests.conftest import Team
from tests.integration.test_process_reads_updates import create, update


def records(team: Team, **body) -> tuple[list[dict], dict]:
    cmd = ListRecords.model_validate(body)
    return team.services.run(
        search_records, team.caller, "customer", cmd, cursor_key=team.services.cursor_key
    )


def phones(team: Team, **body) -> list[str]:
    return [r["data"]["phone_number"] for r in records(team, limit=100, **body)[0]]


@pytest.fixture
def five(team: Team) -> Team:
    """Customers 70000001..70000005; the even ones with an email; each with a lead, the first with two."""
    for i in range(1, 6):
        data = {"phone_number": f"7000000{i}", "name": f"C{i}"} | (
            {"email": f"c{i}@x.io"} if i % 2 == 0 else {}
        )
        create(team, {"data": {"lead_id": f"LEAD-{i}"}, "record": {"data": data}})
    create(team, {"data": {"lead_id": "LEAD-11"}, "record": {"data": {"phone_number": "70000001"}}})
    return team


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({}, [1, 2, 3, 4, 5]),
        ({"email": None}, [1, 3, 5]),
        ({"record.email": {"!=": None}}, [2, 4]),
        ({"phone_number": {">=": "70000002", "<": "70000005"}}, [2, 3, 4]),
        ({"or": [{"name": "C1"}, {"email": "c4@x.io"}]}, [1, 4]),
        ({"name": ["C5", "C3"], "email": {"!=": "c3@x.io"}}, [3, 5]),
        ({"createdAt": {">": 0}, "updatedAt": {"<": 0}}, []),
    ],
)
def test_where_on_records(five: Team, where: dict, expected: list[int]) -> None:
    assert phones(five, where=where, sort=[{"field": "phone_number"}]) == [f"7000000{i}" for i in expected]


def test_sort_and_cursor_paging_on_records(five: Team) -> None:
    for sort in (
        [{"field": "email", "dir": "desc"}, {"field": "name"}],
        [{"field": "phone_number", "dir": "desc"}],
        [],
    ):
        seen, cursor = [], None
        while True:
            page, meta = records(five, sort=sort, limit=2, **({"cursor": cursor} if cursor else {}))
            seen += [r["data"]["phone_number"] for r in page]
            if not meta["hasMore"]:
                break
            cursor = meta["nextCursor"]
        assert sorted(seen) == [f"7000000{i}" for i in range(1, 6)]
        if sort and sort[0]["field"] == "email":
            assert seen[:2] == ["70000004", "70000002"] and seen[2:] == ["70000001", "70000003", "70000005"]
        if sort and sort[0]["field"] == "phone_number":
            assert seen == sorted(seen, reverse=True)
    with pytest.raises(BadRequest):  # a cursor is bound to its list
        _, meta = records(five, limit=1)
        records(five, limit=1, cursor=meta["nextCursor"], where={"name": "C1"})


def test_unknown_fields_and_bad_values_are_refused(five: Team) -> None:
    for where, code in (
        ({"nope": 1}, "unknown_field"),
        ({"email": 5}, "invalid_value"),
        ({"status": "OPEN"}, "unknown_field"),
    ):
        with pytest.raises(Invalid) as caught:
            records(five, where=where)
        assert caught.value.errors[0].code == code
    with pytest.raises(NotFound):
        five.services.run(search_records, five.caller, "nope", ListRecords(), cursor_key=b"k")


def test_read_and_update_by_id_and_by_primary_key(five: Team) -> None:
    run, caller = five.services.run, five.caller
    by_pk = run(read_record, caller, "customer", ("phone_number", "7000-0003"))  # normalised as when stored
    assert by_pk["data"] == {"phone_number": "70000003", "name": "C3"}
    assert run(read_record, caller, "customer", (by_pk["id"],)) == by_pk
    changed = run(
        update_record,
        caller,
        "customer",
        (by_pk["id"],),
        UpdateRecord(data={"email": "C3@X.IO", "name": None}),
    )
    assert (
        changed["data"] == {"phone_number": "70000003", "email": "C3@x.io"}
        and changed["updatedAt"] >= by_pk["updatedAt"]
    )
    moved = run(
        update_record,
        caller,
        "customer",
        ("phone_number", "70000003"),
        UpdateRecord(data={"phone_number": "7900"}),
    )
    assert (
        moved["id"] == by_pk["id"]
        and run(read_record, caller, "customer", ("phone_number", "7900"))["id"] == by_pk["id"]
    )
    with pytest.raises(NotFound):
        run(read_record, caller, "customer", ("phone_number", "70000003"))
    with pytest.raises(Conflict) as taken:
        run(
            update_record, caller, "customer", (by_pk["id"],), UpdateRecord(data={"phone_number": "70000001"})
        )
    assert taken.value.code == "duplicate_primary_key"
    for data, code in (
        ({"phone_number": None}, "required"),
        ({"nope": 1}, "unknown_attribute"),
        ({"email": "x"}, "invalid_value"),
    ):
        with pytest.raises(Invalid) as caught:
            run(update_record, caller, "customer", (by_pk["id"],), UpdateRecord(data=data))
        assert caught.value.errors[0].code == code
    assert run(read_record, caller, "customer", (by_pk["id"],)) == moved  # refused updates changed nothing
    for ref in (("name", "C1"), ("nope",), ("phone_number", "1")):
        with pytest.raises(NotFound):
            run(read_record, caller, "customer", ref)


def test_a_records_processes(five: Team) -> None:
    run, caller = five.services.run, five.caller
    record = run(read_record, caller, "customer", ("phone_number", "70000001"))
    seen, cursor = [], None
    while True:
        cmd = RecordProcesses.model_validate({"limit": 1} | ({"cursor": cursor} if cursor else {}))
        page, meta = run(
            record_processes, caller, "customer", (record["id"],), cmd, cursor_key=five.services.cursor_key
        )
        seen += page
        if not meta["hasMore"]:
            break
        cursor = meta["nextCursor"]
    assert [p["data"]["lead_id"] for p in seen] == ["LEAD-11", "LEAD-1"]  # the last updated first
    update(five, ("lead_id", "LEAD-11"), {"isDeleted": True})
    page, _ = run(record_processes, caller, "customer", (record["id"],), RecordProcesses(), cursor_key=b"k")
    assert [p["data"]["lead_id"] for p in page] == ["LEAD-1"]


def test_another_teams_records_are_not_found(five: Team, team_factory) -> None:
    other = team_factory()
    record = five.services.run(read_record, five.caller, "customer", ("phone_number", "70000001"))
    for call in (
        lambda: other.services.run(read_record, other.caller, "customer", (record["id"],)),
        lambda: other.services.run(
            update_record, other.caller, "customer", (record["id"],), UpdateRecord(data={"name": "x"})
        ),
        lambda: other.services.run(
            record_processes, other.caller, "customer", (record["id"],), RecordProcesses(), cursor_key=b"k"
        ),
    ):
        with pytest.raises(NotFound):
            call()
    assert records(other)[0] == []
