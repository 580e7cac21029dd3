"""How a text search is read (``words.reach``: FEW, MANY, MOST) changes its speed, never its answer; and a
record's text attribute compared for equality is narrowed by the records' words without changing its answer."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from procession.domain.query import Both, Compare, Either, Field
from procession.services.commands import ListProcesses
from procession.services.reads import list_processes
from procession.store import words
from procession.store.search import clause
from tests.conftest import Team
from tests.integration.bulk import create

FIRST, LAST, CITIES = ["Ted", "Robin", "Lily"], ["Mosby", "Scherbatsky"], ["Pune", "Osaka", "Lyon"]
EMAILS = ["a.b@x.example", "A.B@x.example", "c@y.example"]


def leads(team: Team) -> None:
    """Thirty leads, every third for a customer record (its name the only place ``Aldrin`` is found)."""
    if found_ids(team, {"q": "Pune"}):
        return
    for i in range(30):
        body: dict[str, Any] = {
            "data": {
                "firstname": FIRST[i % 3],
                "lastname": LAST[i % 2],
                "city": CITIES[i % len(CITIES) - (i % 5 == 0)],
                "score": i % 7,
            }
        }
        if i % 3 == 0:
            name = "Marshall Aldrin" if i % 2 else "Barney Stinson"
            body["record"] = {
                "data": {"phone_number": f"77000000{i:02d}", "name": name, "email": EMAILS[i // 3 % 3]}
            }
        create(team, body)


def found_ids(team: Team, body: dict[str, Any]) -> list[str]:
    page, _ = team.services.run(
        list_processes,
        team.caller,
        "lead",
        ListProcesses.model_validate({"limit": 100, **body}),
        cursor_key=team.services.cursor_key,
    )
    return [p["id"] for p in page]


WORDS = st.sampled_from(["ted", "mosby", "robin", "pune", "osaka", "aldrin", "stinson", "marshall", "lyon"])
WHERES = st.sampled_from(
    [
        None,
        {"city": "Pune"},
        {"score": {">=": 3}},
        {"record.email": "a.b@x.example"},
        {"or": [{"record.email": "c@y.example"}, {"city": "Osaka"}]},
    ]
)
SORTS = st.sampled_from([None, [{"field": "score", "dir": "desc"}], [{"field": "createdAt"}]])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(q=st.lists(WORDS, min_size=1, max_size=2), where=WHERES, sort=SORTS)
def test_few_many_and_most_find_the_same_processes_in_the_same_order(
    team: Team, q: list[str], where: dict[str, Any] | None, sort: list[dict[str, Any]] | None
) -> None:
    leads(team)
    body = {"q": " ".join(q)} | ({"where": where} if where else {}) | ({"sort": sort} if sort else {})
    pages = []
    for reach in (words.FEW, words.MANY, words.MOST):
        with mock.patch.object(words, "reach", lambda *_, reach=reach: reach):
            pages.append(found_ids(team, body))
    assert pages[0] == pages[1] == pages[2]


def test_the_reach_of_words_follows_how_many_rows_they_find(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = team.services.engine
    with team.services.uows.read(team.id) as uow:
        procedure = uow.procedures.get("lead")
    assert procedure is not None
    # SQLite: as if the procedure had 1 row (ANALYZE's figure): FEW up to 3 rows, MOST past 50
    monkeypatch.setattr(words, "COMMON", 3)
    monkeypatch.setattr(words, "_rows_per_procedure", lambda _: 1)
    for _ in range(40):
        create(team, {"data": {"firstname": "Everywhereish", "city": "Quito"}})
    create(team, {"data": {"firstname": "Onceonly"}})
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":  # told by the planner's figures: 20 rows at most are few
            conn.execute(sa.text("ANALYZE processes"))
            conn.execute(sa.text("ANALYZE records"))
            rows = conn.execute(
                sa.text("SELECT reltuples FROM pg_class WHERE relname = 'processes'")
            ).scalar()
            monkeypatch.setattr(words, "FEW_SHARE", 20 / float(rows))
        assert words.reach(conn, "everywhereish", team.id, procedure.id) == words.MANY
        assert words.reach(conn, "onceonly", team.id, procedure.id) == words.FEW
        assert words.reach(conn, "nowhereatall", team.id, procedure.id) == words.FEW
        if conn.dialect.name == "sqlite":  # more than MOST_SPAN times the square root of the rows: MOST
            monkeypatch.setattr(words, "MOST_SPAN", 0)
            assert words.reach(conn, "everywhereish", team.id, procedure.id) == words.MOST
            assert words.reach(conn, "onceonly", team.id, procedure.id) == words.FEW


def test_a_record_attribute_s_equality_is_exact_though_narrowed_by_words(team: Team) -> None:
    leads(team)
    exact = found_ids(team, {"where": {"record.email": "a.b@x.example"}})
    other_case = found_ids(team, {"where": {"record.email": "A.B@x.example"}})
    assert exact and other_case and not set(exact) & set(other_case)  # words match in any case; values not
    assert (
        found_ids(team, {"where": {"record.name": "Aldrin Marshall"}}) == []
    )  # the same words, not the value
    assert len(found_ids(team, {"where": {"record.name": "Marshall Aldrin"}})) == 5


def test_a_record_s_text_equality_reads_the_records_words_and_among_alternatives_their_ids_first(
    team: Team,
) -> None:
    email = Field("data", "email-id", table="records", via="entity-id")
    equal, alternatives = Compare(email, "=", "a.b@x.example"), Either((Compare(email, "=", "c@y.example"),))
    dialect = team.services.engine.dialect
    sql = str(clause(Both((equal,))).compile(dialect=dialect))
    assert (
        "record_words MATCH" if dialect.name == "sqlite" else "to_tsvector('simple', records.data)"
    ) in sql
    either = str(clause(alternatives).compile(dialect=dialect))
    assert ("IN (SELECT" if dialect.name == "sqlite" else "= any(array((SELECT") in either
    assert "record_words" not in str(clause(Compare(email, "!=", "x")).compile(dialect=dialect))
