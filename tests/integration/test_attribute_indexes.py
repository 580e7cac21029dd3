"""Indexed attributes on SQLite and PostgreSQL: marked through the procedure's definition, built and dropped
by background work, used by lists for equality, range and sort, with the same answers as without."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from procession.domain.errors import Invalid
from procession.engine.indexing import KIND
from procession.engine.tasks import run_task
from procession.services.commands import CreateProcess, ListProcesses, ProcedureInput
from procession.services.configuration import define_procedure, get_procedure
from procession.services.processes import create_process
from procession.services.reads import list_processes
from procession.store import indexes
from procession.store import tables as t
from tests.conftest import Team

CITIES = ["Osaka", "Lyon", "Porto", None]


def define(team: Team, indexed: set[str], *, types: dict[str, str] | None = None) -> dict[str, Any]:
    """Save ``lead`` again with exactly the attributes ``indexed`` marked so (and types changed in ``types``)."""
    procedure = team.services.run(get_procedure, team.id, "lead")
    body = {k: v for k, v in procedure.items() if k in ProcedureInput.model_fields}
    body["attributes"] = [
        {k: v for k, v in a.items() if k != "indexed"} | {"indexed": a["shortId"] in indexed}
        for a in procedure["attributes"]
    ]
    for attr in body["attributes"]:
        if types and attr["shortId"] in types:
            attr.pop("id")
            attr["type"] = types[attr["shortId"]]
    return team.services.run(define_procedure, team.id, ProcedureInput.model_validate(body), ref="lead")


def work(team: Team) -> int:
    """Run the team's pending index tasks, as a worker would: how many ran."""
    c = t.tasks.c
    with team.services.engine.connect() as conn:
        due = conn.scalars(
            sa.select(c.id).where(c.team_id == team.id, c.kind == KIND, c.status == "PENDING").order_by(c.id)
        ).all()
    for task_id in due:
        assert run_task(team.services.uows, team.services.kinds, task_id)
    return len(due)


def listed(team: Team, **body: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A page of leads and its meta (``nextCursor``)."""
    return team.services.run(  # type: ignore[no-any-return]
        list_processes,
        team.caller,
        "lead",
        ListProcesses.model_validate(body),
        cursor_key=team.services.cursor_key,
    )


def search(team: Team, **body: Any) -> list[dict[str, Any]]:
    return listed(team, **body)[0]


def walk(team: Team, **body: Any) -> list[str]:
    """Every process the query finds, following cursors, a page of 3 at a time."""
    found: list[str] = []
    cursor = None
    while True:
        page, meta = listed(team, **body, limit=3, cursor=cursor)
        found += [p["id"] for p in page]
        cursor = meta["nextCursor"]
        if cursor is None:
            return found


@contextmanager
def captured(team: Team) -> Iterator[list[tuple[str, Any]]]:
    """The statements on ``processes`` sent meanwhile."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
        if "FROM processes" in statement:
            seen.append((statement, params))

    sa.event.listen(team.services.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(team.services.engine, "before_cursor_execute", record)


def plan(team: Team, **body: Any) -> str:
    """The plan of the list query for ``body`` (PostgreSQL: with scans of the whole table discouraged, as
    a big table would)."""
    with captured(team) as seen:
        search(team, **body)
    sql, params = seen[-1]
    raw: Any = team.services.engine.raw_connection()
    try:
        cur = raw.cursor()
        if team.services.settings.is_sqlite:
            cur.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            return "\n".join(row[3] for row in cur.fetchall())
        cur.execute("ANALYZE processes")
        cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute("SET LOCAL enable_bitmapscan = off")
        cur.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cur.fetchall())
    finally:
        raw.rollback()
        raw.close()


@pytest.fixture
def leads(team: Team) -> list[dict[str, Any]]:
    out = []
    for i in range(24):
        data: dict[str, Any] = {"city": CITIES[i % 4], "lastname": f"L{i}"}
        if i % 5:
            data["score"] = i % 7
        out.append(team.services.run(create_process, team.caller, "lead", CreateProcess(data=data))[1])
    return out


QUERIES: list[dict[str, Any]] = [
    {"where": {"score": {">=": 3}}, "sort": [{"field": "score", "dir": "desc"}]},
    {"where": {"score": {">=": 3}}, "sort": [{"field": "score", "dir": "asc"}]},
    {"where": {"score": [1, 2, 5]}, "sort": [{"field": "score", "dir": "asc"}]},
    {"sort": [{"field": "score", "dir": "desc"}]},
    {"sort": [{"field": "score", "dir": "asc"}]},
    {"where": {"city": "Lyon"}},
    {"where": {"city": {"<": "Porto"}}, "sort": [{"field": "city"}]},
    {"where": {"score": {"!=": 3}}, "sort": [{"field": "score", "dir": "desc"}]},
]


def test_marked_attributes_are_built_in_the_background_then_ready_and_dropped_when_unmarked(
    team: Team, leads: list[dict[str, Any]]
) -> None:
    before = {i: walk(team, **q) for i, q in enumerate(QUERIES)}
    saved = define(team, {"score", "city"})
    assert saved["indexes"] == {"score": "building", "city": "building"}
    assert {a["shortId"] for a in saved["attributes"] if a.get("indexed")} == {"score", "city"}
    assert work(team) == 1
    assert team.services.run(get_procedure, team.id, "lead")["indexes"] == {"score": "ready", "city": "ready"}
    names = {indexes.name(a["id"]) for a in saved["attributes"] if a.get("indexed")}
    with team.services.engine.connect() as conn:
        assert names <= {n for n, valid in indexes.existing(conn).items() if valid}
    # the same answers, in the same order, page after page
    assert {i: walk(team, **q) for i, q in enumerate(QUERIES)} == before
    assert define(team, {"score"})["indexes"] == {"score": "ready"}
    assert work(team) == 1
    with team.services.engine.connect() as conn:
        left = indexes.existing(conn)
    assert [n for n in names if n in left] == [
        indexes.name(next(a["id"] for a in saved["attributes"] if a["shortId"] == "score"))
    ]
    define(team, set())
    work(team)
    with team.services.engine.connect() as conn:
        assert not names & indexes.existing(conn).keys()
    assert "indexes" in team.services.run(get_procedure, team.id, "lead")


@pytest.mark.parametrize(
    "body",
    [
        {"where": {"score": {">=": 3}}, "sort": [{"field": "score", "dir": "desc"}]},
        {"where": {"score": {">=": 3}}, "sort": [{"field": "score", "dir": "asc"}]},
        {"sort": [{"field": "score", "dir": "desc"}]},
        {"where": {"score": 4}},
    ],
)
def test_lists_use_the_index_for_equality_range_and_sort(
    team: Team, leads: list[dict[str, Any]], body: dict[str, Any]
) -> None:
    saved = define(team, {"score"})
    work(team)
    name = indexes.name(next(a["id"] for a in saved["attributes"] if a["shortId"] == "score"))
    found = plan(team, **body)
    assert name in found, found
    assert "TEMP B-TREE FOR ORDER BY" not in found and "Sort Key" not in found.replace("Presorted", "")


def test_an_attribute_whose_values_are_lists_cannot_be_indexed(team: Team) -> None:
    with pytest.raises(Invalid) as caught:
        define(team, {"country"}, types={"country": "json"})
    assert [(e.code, e.field) for e in caught.value.errors] == [("not_indexable", "attributes[10].indexed")]


@pytest.mark.parametrize("direction", ["desc", "asc"])
def test_a_page_after_a_value_of_an_attribute_some_lack_seeks_to_it_in_its_index(
    team: Team, leads: list[dict[str, Any]], direction: str
) -> None:
    saved = define(team, {"score"})
    work(team)
    name = indexes.name(next(a["id"] for a in saved["attributes"] if a["shortId"] == "score"))
    body = {"sort": [{"field": "score", "dir": direction}], "limit": 3}
    _, meta = listed(team, **body)
    found = plan(team, **body, cursor=meta["nextCursor"])
    # the rows with a value beyond the cursor's: a range of the index (not every row before it, filtered)
    seek = "<expr><?" if direction == "desc" else "<expr>>?"
    if team.services.settings.is_sqlite:
        assert f"USING INDEX {name} (procedure_id=? AND {seek})" in found, found
    else:
        # a row value: the index seeks to the cursor's row, however many rows share its score
        assert re.search(r"Index Cond: .*procedure_id.* AND \(ROW\(.*data ->> .*\) [<>] ROW\(", found), found
