"""A procedure's requirements and a process's page without a browser: requirements read as sentences, met
or not, and what each blocks; a refused move names the unmet requirement and what it reads; the data and
the record edited through the API's use cases (only what changed is sent; mistakes at their input; a stale
form refused); links to other systems; board columns paged by cursor."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from procession.api.app import create_app
from procession.bootstrap import Services
from procession.domain.clock import now_ms
from procession.domain.connectors import Link
from procession.services.accounts import set_password
from procession.services.commands import CreateProcess, ProcedureInput
from procession.services.configuration import define_procedure
from procession.services.connectors import ConnectorInput, create_connector
from procession.services.processes import create_process
from procession.services.reads import get_process, process_history
from procession.services.records import get_record
from tests.conftest import Team, make_team

PASSWORD = "admin password 1"
DEAL = {
    "shortId": "deal", "label": "Deal", "primaryKey": "code", "entity": "customer",
    "attributes": [
        {"shortId": "code", "type": "string"}, {"shortId": "amount", "label": "Amount", "type": "integer"},
        {"shortId": "closes", "label": "Closes", "type": "datetime"}, {"shortId": "won", "type": "boolean"},
        {"shortId": "tags", "type": "multiStringEnum", "options": ["hot", "cold"]},
    ],
    "states": [{"shortId": "OPEN"}, {"shortId": "WON"}], "transitions": {"OPEN": ["WON"], "WON": ["OPEN"]},
    "requirements": [{"name": "priced", "use": "gate", "state": "WON", "condition": "process.data.amount > 0",
                      "message": "a deal is won at a price"}],
}  # fmt: skip


@pytest.fixture(scope="module")
def team(sqlite_services: Services) -> Team:
    team = make_team(sqlite_services)
    sqlite_services.run(set_password, team.id, "admin", PASSWORD)
    sqlite_services.run(define_procedure, team.id, ProcedureInput.model_validate(DEAL))
    return team


@pytest.fixture(scope="module")
def client(sqlite_services: Services, team: Team) -> Iterator[TestClient]:
    with TestClient(create_app(sqlite_services), follow_redirects=False) as c:
        csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/sign-in").text)
        assert csrf is not None
        data = {"csrf": csrf.group(1), "team": team.slug, "username": "admin", "password": PASSWORD}
        assert c.post("/sign-in", data=data).status_code == 303
        yield c


def token(client: TestClient) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/procedures").text)
    assert found is not None
    return found.group(1)


def a_deal(team: Team, **body: Any) -> dict[str, Any]:
    _, made = team.services.run(create_process, team.caller, "deal", CreateProcess.model_validate(body))
    return made


def edit_form(client: TestClient, process_id: str) -> dict[str, Any]:
    """The edit page's data form as a browser would send it, untouched."""
    html = client.get(f"/processes/{process_id}/edit").text
    start = html.index(f'action="/processes/{process_id}/edit"')
    form = html[start : html.index("</form>", start)]
    sent: dict[str, Any] = {}
    for name, value in re.findall(r'<input id="[^"]*" name="([^"]+)"[^>]*value="([^"]*)"', form):
        sent[name] = value
    for name, value in re.findall(r'name="(csrf|version)" value="([^"]*)"', form):
        sent[name] = value
    for name, options in re.findall(r'<select id="[^"]*" name="([^"]+)"[^>]*>(.*?)</select>', form):
        chosen = re.findall(r'<option value="([^"]*)" selected', options)
        if chosen:
            sent[name] = chosen
    return sent


def test_requirements_read_as_sentences_with_what_they_block(client: TestClient, team: Team) -> None:
    procedure = client.get("/procedures/deal").text
    assert re.search(
        r'id="requirement-priced">.*must hold to enter state <strong>WON</strong>', procedure, re.S
    )
    assert "<code>process.data.amount &gt; 0</code>" in procedure and "data.amount" in procedure
    deal = a_deal(team, data={"code": "D-1"})
    page = client.get(f"/processes/{deal['id']}").text
    assert "Cannot enter <strong>WON</strong> until priced is met." in page
    assert re.search(r'id="requirement-priced">.*not met', page, re.S)
    assert '<option value="WON">WON (needs priced)</option>' in page


def test_a_refused_move_names_the_unmet_requirement_and_what_it_reads(client: TestClient, team: Team) -> None:
    deal = a_deal(team, data={"code": "D-2"})
    reply = client.post(
        f"/procedures/deal/processes/{deal['id']}/state",
        data={"state": "WON"},
        headers={"accept": "application/json", "x-csrf-token": token(client)},
    )
    assert reply.status_code == 422
    [reason] = reply.json()["reasons"]
    assert "'priced'" in reason and "a deal is won at a price" in reason and "reads data.amount" in reason
    board = client.post(
        f"/procedures/deal/processes/{deal['id']}/state",
        data={"state": "WON", "next": "/procedures/deal/board", "csrf": token(client)},
    )
    assert "reads data.amount" in client.get(board.headers["location"]).text


def test_the_data_is_edited_through_the_one_save_path(client: TestClient, team: Team) -> None:
    deal = a_deal(team, data={"code": "D-3", "closes": 1767225600000, "won": False, "tags": ["hot"]})
    form = edit_form(client, deal["id"])
    assert form["data.closes"] == "2026-01-01T00:00:00" and form["data.won"] == ["false"]
    assert form["data.tags"] == ["hot"]
    unchanged = client.post(f"/processes/{deal['id']}/edit", data=form)
    assert unchanged.status_code == 303
    events, _ = team.services.run(process_history, team.caller, "deal", (deal["id"],))
    assert [e["type"] for e in events] == ["process.created"]  # nothing sent, nothing saved
    wrong = client.post(f"/processes/{deal['id']}/edit", data=form | {"data.amount": "lots"})
    assert wrong.status_code == 422
    assert re.search(r'id="data-amount-error">amount must be a whole number<', wrong.text)
    assert 'value="lots"' in wrong.text
    saved = client.post(f"/processes/{deal['id']}/edit", data=form | {"data.amount": "500", "data.tags": []})
    assert saved.status_code == 303 and saved.headers["location"].endswith("?saved=data")
    now = team.services.run(get_process, team.caller, "deal", (deal["id"],))
    assert now["data"]["amount"] == 500 and "tags" not in now["data"] and now["data"]["won"] is False
    stale = client.post(f"/processes/{deal['id']}/edit", data=form | {"data.amount": "7"})  # version 1
    assert stale.status_code == 409 and "version" in stale.text
    moved = client.post(
        f"/procedures/deal/processes/{deal['id']}/state",
        data={"state": "WON"},
        headers={"accept": "application/json", "x-csrf-token": token(client)},
    )
    assert moved.json() == {"ok": True}  # priced now


def test_the_record_is_edited_beside_the_data(client: TestClient, team: Team) -> None:
    first = a_deal(team, data={"code": "D-4"}, record={"data": {"phone_number": "7701214822"}})
    a_deal(team, data={"code": "D-5"}, record={"data": {"phone_number": "7701214823"}})
    url = f"/processes/{first['id']}/record"
    bad = client.post(url, data={"csrf": token(client), "record.data.phone_number": "7701214822",
                                 "record.data.email": "not an email"})  # fmt: skip
    assert bad.status_code == 422 and 'id="record-data-email-error"' in bad.text
    clash = client.post(url, data={"csrf": token(client), "record.data.phone_number": "7701214823"})
    assert clash.status_code == 409 and 'id="record-data-phone_number-error"' in clash.text
    done = client.post(url, data={"csrf": token(client), "record.data.phone_number": "7701214822",
                                  "record.data.email": "ted@example.com"})  # fmt: skip
    assert done.status_code == 303
    record = team.services.run(get_record, team.caller, first["record"])
    assert record["data"]["email"] == "ted@example.com"
    assert "ted@example.com" in client.get(f"/processes/{first['id']}").text


def test_a_process_shows_its_links_to_other_systems(client: TestClient, team: Team) -> None:
    connector = team.services.run(
        create_connector, team.id,
        ConnectorInput(name="crm", kind="http", baseUrl="http://127.0.0.1:9", credentials={"auth": "x"}),
        vault=team.services.vault,
    )  # fmt: skip
    deal = a_deal(team, data={"code": "D-6"})
    assert "Nothing made elsewhere for it yet" in client.get(f"/processes/{deal['id']}").text
    at = now_ms()
    with team.uow() as uow:
        uow.links.put(
            [Link(deal["id"], connector["id"], "contacts", "C-77", "https://crm.example/c/77", at, at)]
        )
        uow.commit()
    page = client.get(f"/processes/{deal['id']}").text
    assert re.search(r'id="links">.*crm.*contacts.*href="https://crm.example/c/77"[^>]*>C-77', page, re.S)


def test_a_board_column_shows_the_next_cards_by_cursor(client: TestClient, team: Team) -> None:
    made = {a_deal(team, state="WON", data={"code": f"P-{n}", "amount": 1})["id"] for n in range(27)}
    board = client.get("/procedures/deal/board").text
    column = board[board.index('data-state="WON"') :]
    first = set(re.findall(r'class="card" draggable="true" data-id="([^"]+)"', column))
    assert len(first) == 20 and "(20+)" in column
    more = re.search(r'href="(/procedures/deal/board/WON\?cursor=[^"]+)"', column)
    assert more is not None
    rest_page = client.get(more.group(1).replace("&amp;", "&")).text
    rest = set(re.findall(r'class="card" draggable="true" data-id="([^"]+)"', rest_page))
    assert first | rest >= made and not first & rest
    assert 'class="button more"' not in rest_page  # the last of them
    assert client.get("/procedures/deal/board/NOPE").status_code == 404


def test_a_text_box_sent_back_with_a_browsers_line_ends_is_unchanged(client: TestClient, team: Team) -> None:
    _, ticket = team.services.run(
        create_process, team.caller, "ticket", CreateProcess.model_validate({"data": {"description": "a\nb"}})
    )
    form = {"csrf": token(client), "version": "1", "data.description": "a\r\nb"}
    assert client.post(f"/processes/{ticket['id']}/edit", data=form).status_code == 303
    events, _ = team.services.run(process_history, team.caller, "ticket", (ticket["id"],))
    assert [e["type"] for e in events] == ["process.created"]
