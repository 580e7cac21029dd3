"""Text search (``q``) on SQLite and PostgreSQL: the words of a process's text values and of its record's,
kept in the transaction of every save (create, update, bulk entry, record matched and changed)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from procession.domain.errors import Invalid
from procession.services.commands import ListProcesses, UpdateProcess
from procession.services.processes import update_process
from procession.services.reads import list_processes
from procession.store import words
from tests.conftest import Team
from tests.integration.bulk import create, drain, submit
from tests.integration.text import scattered, segments


def found(team: Team, q: str, **body: Any) -> set[str]:
    page, _ = team.services.run(
        list_processes,
        team.caller,
        "lead",
        ListProcesses.model_validate({"q": q, "limit": 100, **body}),
        cursor_key=team.services.cursor_key,
    )
    return {p["id"] for p in page}


def lead(team: Team, data: dict[str, Any], record: dict[str, Any] | None = None) -> str:
    body: dict[str, Any] = {"data": data} | ({"record": {"data": record}} if record else {})
    return str(create(team, body)["id"])


def test_every_word_must_match_a_text_value_whole_in_any_case(team: Team) -> None:
    ted = lead(team, {"firstname": "Ted", "lastname": "Mosby", "city": "New York"})
    marshall = lead(team, {"firstname": "Marshall", "lastname": "Eriksen", "city": "New York"})
    lead(team, {"firstname": "Barney", "score": 7})
    assert found(team, "mosby") == {ted}
    assert found(team, "NEW york") == {ted, marshall}
    assert found(team, "ted york") == {ted}
    assert found(team, "ted eriksen") == set()
    assert found(team, "Mos") == set()  # words, not parts of words
    assert found(team, "7") == set()  # numbers are not text
    assert found(team, "york", where={"firstname": "Marshall"}) == {marshall}


def test_an_update_replaces_the_words_in_its_own_transaction(team: Team) -> None:
    ted = lead(team, {"firstname": "Ted", "city": "Chicago"})
    team.services.run(
        update_process,
        team.caller,
        "lead",
        (ted,),
        UpdateProcess.model_validate({"data": {"city": "Brooklyn"}}),
    )
    assert found(team, "brooklyn") == {ted} and found(team, "chicago") == set()
    team.services.run(
        update_process, team.caller, "lead", (ted,), UpdateProcess.model_validate({"data": {"score": 3}})
    )
    assert found(team, "brooklyn ted") == {ted}  # a change of a number alone leaves the words as they were
    team.services.run(
        update_process,
        team.caller,
        "lead",
        (ted,),
        UpdateProcess.model_validate({"data": {"city": "Queens"}}),
    )
    assert found(team, "queens ted") == {ted} and found(team, "brooklyn") == set()


def test_bulk_entries_keep_the_words(team: Team) -> None:
    ids = [lead(team, {"firstname": f"Ted{i}", "city": "Pune"}) for i in range(5)]
    job = submit(team, [{"id": i, "data": {"city": "Goa"}} for i in ids[:3]])
    drain(team)
    assert job["id"]
    assert found(team, "goa") == set(ids[:3])
    assert found(team, "pune") == set(ids[3:])


def test_the_record_s_words_find_its_processes_and_follow_its_changes(team: Team) -> None:
    phone = "7701214822"
    first = lead(team, {"firstname": "Ted"}, {"phone_number": phone, "name": "Robin Scherbatsky"})
    lead(team, {"firstname": "Robin"})  # no record: not found by the record's surname
    assert found(team, "scherbatsky") == {first}
    # the record matched by its primary key, and changed, by another process's create
    second = lead(team, {"firstname": "Lily"}, {"phone_number": phone, "name": "Robin Stinson"})
    assert found(team, "stinson") == {first, second}
    assert found(team, "scherbatsky") == set()
    assert found(team, phone) == {first, second}


def test_another_team_s_words_are_never_found(team: Team, team_factory: Any) -> None:
    other = team_factory()
    lead(other, {"firstname": "Zoey"}, {"phone_number": "5550001111", "name": "Zoey Pierson"})
    mine = lead(team, {"lastname": "Pierson"})
    assert found(team, "pierson") == {mine}
    assert found(team, "zoey") == set()


def test_pages_of_a_search_follow_their_cursor(team: Team) -> None:
    ids = {lead(team, {"city": "Osaka", "score": i}) for i in range(7)}
    seen: list[str] = []
    cursor = None
    while True:
        page, meta = team.services.run(
            list_processes,
            team.caller,
            "lead",
            ListProcesses.model_validate({"q": "osaka", "limit": 3, "cursor": cursor}),
            cursor_key=team.services.cursor_key,
        )
        seen += [p["id"] for p in page]
        if (cursor := meta["nextCursor"]) is None:
            break
    assert sorted(seen) == sorted(ids)


@pytest.mark.parametrize("q", ["", "   ", "--- ...", " ".join(["w"] * 17)])
def test_a_q_without_words_or_with_too_many_is_refused(team: Team, q: str) -> None:
    with pytest.raises(Invalid) as caught:
        found(team, q)
    assert caught.value.errors[0].field == "q"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(q=st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=40))
def test_any_text_is_words_never_syntax(team: Team, q: str) -> None:
    """Quotes, operators (OR, NOT, NEAR, *, ^, :, -) and any characters are words to look for or nothing."""
    lead(team, {"firstname": "Quinn", "city": "Osaka"}) if not found(team, "quinn") else None
    try:
        result = found(team, q + " quinn")
    except Invalid as e:
        assert e.errors[0].field == "q"
        return
    assert result <= found(team, "quinn")


def test_common_words_are_looked_for_along_the_list_s_order_with_the_same_answer(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = [lead(team, {"firstname": "Ted", "city": "Austin", "score": i}) for i in range(5)]
    rare = found(team, "ted austin", sort=[{"field": "score", "dir": "desc"}])
    monkeypatch.setattr(words, "COMMON", 1)  # SQLite: any q finds "many"
    assert found(team, "ted austin", sort=[{"field": "score", "dir": "desc"}]) == rare == set(made)


def tidied(team: Team) -> int:
    """``words.tidy`` a step at a time, each its own transaction, until it says nothing is left; the steps."""
    for step in range(1, 100):
        with team.services.engine.begin() as conn:
            if not words.tidy(conn, pages=2):
                return step
    raise AssertionError("tidy never ended")


def test_tidy_merges_the_index_a_step_at_a_time_and_finds_the_same(team: Team) -> None:
    made = scattered(team, "Ted")
    before = {q: found(team, q) for q in ("ted", "austin", "ted 7", "nobody")}
    sqlite = team.services.settings.is_sqlite
    assert tidied(team) >= (2 if sqlite else 1)  # a step that merged, then one with nothing left (PostgreSQL)
    assert {q: found(team, q) for q in before} == before and before["ted"] == set(made)
    if sqlite:
        assert segments(team) == 1
        with team.services.engine.connect() as conn:
            assert words.tidy_steps(conn, pages=2) > 1
        lead(team, {"firstname": "Ted"})
        assert len(found(team, "ted")) == len(made) + 1  # written after: a segment of its own, found too
