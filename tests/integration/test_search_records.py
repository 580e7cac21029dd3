"""Filters and sorts on booleans and on the process's record (``record.<shortId>``, or a bare entity
attribute), on SQLite and PostgreSQL: every form of a comparison, nulls for a process without a record, and
cursor paging on a record's sort key."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from procession.domain.errors import Invalid
from procession.services.commands import ListProcesses, ProcedureInput
from procession.services.configuration import define_procedure
from procession.services.reads import count_processes, list_processes
from tests.conftest import Team
from tests.integration.test_process_reads_updates import create, search, update


def leads(team: Team, where: dict, sort: list | None = None) -> list[str]:
    page, _ = search(team, where=where, sort=sort or [{"field": "lead_id"}], limit=100)
    return [p["data"]["lead_id"] for p in page]


@pytest.fixture
def customers(team: Team) -> Team:
    """LEAD-1..5: 1 and 2 for one customer (with an email), 3 for another (without), 4 and 5 for none."""
    ann = {"phone_number": "+91 77012 14822", "email": "ann@example.com", "name": "Ann"}
    bob = {"phone_number": "7701200000", "name": "Bob"}
    for i, record in enumerate([ann, ann, bob, None, None], start=1):
        body: dict = {"data": {"lead_id": f"LEAD-{i}", "score": i}}
        if record:
            body["record"] = {"data": record}
        create(team, body)
    return team


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"record.email": "ann@example.com"}, [1, 2]),
        ({"email": "ann@example.com"}, [1, 2]),  # a bare attribute of the entity
        ({"email": {"!=": "ann@example.com"}}, [3, 4, 5]),
        ({"email": None}, [3, 4, 5]),
        ({"email": {"!=": None}}, [1, 2]),
        ({"email": ["ann@example.com", None]}, [1, 2, 3, 4, 5]),
        ({"email": ["zed@example.com"]}, []),
        ({"phone_number": "+917701214822"}, [1, 2]),  # the primary key, normalised as when stored
        ({"record.phone_number": {">=": "7701200000"}}, [3]),
        ({"record.phone_number": {"<": "7701200000"}}, [1, 2]),
        ({"record.phone_number": {"<=": "7701200000"}}, [1, 2, 3]),  # "+" sorts first
        ({"record.phone_number": {"!=": "7701200000"}}, [1, 2, 4, 5]),
        ({"phone_number": None}, [4, 5]),
        ({"record.name": "Bob", "score": 3}, [3]),
        ({"or": [{"email": "ann@example.com"}, {"phone_number": "7701200000"}]}, [1, 2, 3]),
        ({"or": [{"email": "nobody@example.com"}, {"phone_number": "7701200000"}], "score": 2}, []),
    ],
)
def test_record_filters(customers: Team, where: dict, expected: list[int]) -> None:
    assert leads(customers, where) == [f"LEAD-{i}" for i in expected]
    found, more = customers.services.run(count_processes, customers.caller, "lead", where)
    assert (found, more) == (len(expected), False)


def test_record_sort_pages_by_cursor_without_gaps(customers: Team) -> None:
    for direction in ("asc", "desc"):
        sort = [{"field": "record.email", "dir": direction}, {"field": "phone_number", "dir": direction}]
        seen, cursor = [], None
        while True:
            body = {"sort": sort, "limit": 2} | ({"cursor": cursor} if cursor else {})
            page, meta = search(customers, **body)
            seen += [p["data"]["lead_id"] for p in page]
            if not meta["hasMore"]:
                break
            cursor = meta["nextCursor"]
        assert sorted(seen) == [f"LEAD-{i}" for i in range(1, 6)], seen
        # nulls last in both directions: the customer without an email, then the processes without a record
        assert seen[2:3] == ["LEAD-3"], seen
        assert set(seen[:2]) == {"LEAD-1", "LEAD-2"} and set(seen[3:]) == {"LEAD-4", "LEAD-5"}


@pytest.mark.parametrize(
    ("where", "code"),
    [
        ({"record.nope": 1}, "unknown_field"),
        ({"nope": 1}, "unknown_field"),
        ({"record.email": "not an email"}, "invalid_value"),
        ({"record.email": {"~": "x"}}, "unknown_operator"),
    ],
)
def test_unknown_record_fields_and_bad_values_are_refused(customers: Team, where: dict, code: str) -> None:
    with pytest.raises(Invalid) as caught:
        search(customers, where=where)
    assert caught.value.errors[0].code == code


def test_a_procedure_without_records_refuses_record_fields(team: Team) -> None:
    define_procedure(
        team.services.uows,
        team.id,
        ProcedureInput.model_validate(
            {
                "shortId": "plain",
                "label": "Plain",
                "attributes": [{"shortId": "x", "label": "X", "type": "string"}],
                "states": [{"shortId": "OPEN"}],
            }
        ),
    )
    with pytest.raises(Invalid) as caught:
        team.services.run(
            list_processes,
            team.caller,
            "plain",
            ListProcesses.model_validate({"where": {"record.email": "a@b.c"}}),
            cursor_key=team.services.cursor_key,
        )
    assert caught.value.errors[0].code == "unknown_field"


BOOLEAN_FORMS = [
    (True, {True}),
    (False, {False}),
    ({"=": True}, {True}),
    ({"!=": True}, {False, None}),
    ({"!=": False}, {True, None}),
    ({">": False}, {True}),
    ({">=": False}, {True, False}),
    ({"<": True}, {False}),
    ({"<=": True}, {True, False}),
    ([True], {True}),
    ([False, None], {False, None}),
    ({"=": None}, {None}),
    ({"!=": None}, {True, False}),
    ("true", {True}),  # as the attribute takes it when written
]


@pytest.mark.parametrize(("rhs", "expected"), BOOLEAN_FORMS)
def test_a_boolean_attribute_in_every_form(team: Team, rhs: object, expected: set) -> None:
    define_procedure(
        team.services.uows,
        team.id,
        ProcedureInput.model_validate(
            {
                "shortId": "flags",
                "label": "Flags",
                "attributes": [{"shortId": "on", "label": "On", "type": "boolean"}],
                "states": [{"shortId": "OPEN"}],
            }
        ),
    )
    for value in (True, False, None):
        create(team, {"data": {} if value is None else {"on": value}}, procedure="flags")
    body = {"where": {"on": rhs}, "sort": [{"field": "on"}], "limit": 1}
    found, cursor = [], None
    while True:  # one a page: the cursor compares booleans too
        page, meta = team.services.run(
            list_processes,
            team.caller,
            "flags",
            ListProcesses.model_validate(body | ({"cursor": cursor} if cursor else {})),
            cursor_key=team.services.cursor_key,
        )
        found += [p["data"].get("on") for p in page]
        if not meta["hasMore"]:
            break
        cursor = meta["nextCursor"]
    assert sorted(found, key=lambda v: (v is None, v)) == sorted(expected, key=lambda v: (v is None, v))


@pytest.mark.parametrize(
    ("rhs", "expected"), [f for f in BOOLEAN_FORMS if None not in f[1] and f[0] != "true"]
)
def test_is_deleted_in_every_form(customers: Team, rhs: object, expected: set) -> None:
    update(customers, ("lead_id", "LEAD-5"), {"isDeleted": True})
    page, _ = search(
        customers, where={"isDeleted": rhs}, includeDeleted=True, sort=[{"field": "isDeleted"}], limit=100
    )
    assert {p["isDeleted"] for p in page} == expected
    assert (["LEAD-5"] if expected == {True} else None) in (None, [p["data"]["lead_id"] for p in page])


def plan(team: Team, where: dict) -> str:
    """The database's plan of the list statement ``where`` makes (on PostgreSQL with sequential scans off:
    whether an index can drive it at all, whatever the size of the test's tables)."""
    sent: list[tuple[str, object]] = []

    def capture(_conn, _cursor, statement, params, *_):  # type: ignore[no-untyped-def]
        if "FROM processes" in statement and "LIMIT" in statement:
            sent.append((statement, params))

    engine = team.services.engine
    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        search(team, where=where)
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
    statement, params = sent[-1]
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")
            rows = conn.exec_driver_sql("EXPLAIN " + statement, params).all()  # type: ignore[arg-type]
            return "\n".join(r[0] for r in rows)
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()  # type: ignore[arg-type]
        return "\n".join(str(r[-1]) for r in rows)


def test_a_filter_on_the_records_key_is_driven_by_the_key_index(customers: Team) -> None:
    found = plan(customers, {"phone_number": "7701200000"})
    assert "ux_records_pk" in found, found
    either = plan(
        customers, {"or": [{"phone_number": "7701200000"}, {"record.phone_number": "+917701214822"}]}
    )
    assert "ux_records_pk" in either, either
