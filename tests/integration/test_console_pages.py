"""Console pages without a browser: errors shown where they belong (a create form's field, an automation's
steps, a filter), the control panel's live count, a job's failed entries as CSV, and a refused move's
reason given to the board's script."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from procession.api.app import create_app
from procession.bootstrap import Services
from procession.services.accounts import set_password
from procession.services.commands import CreateProcess, ListProcesses
from procession.services.jobs import submit_job
from procession.services.processes import create_process
from procession.services.reads import list_processes
from tests.conftest import Team, make_team

PASSWORD = "admin password 1"


@pytest.fixture(scope="module")
def team(sqlite_services: Services) -> Team:
    team = make_team(sqlite_services)
    sqlite_services.run(set_password, team.id, "admin", PASSWORD)
    return team


@pytest.fixture(scope="module")
def client(sqlite_services: Services, team: Team) -> Iterator[TestClient]:
    with TestClient(create_app(sqlite_services), follow_redirects=False) as c:
        form = c.get("/sign-in").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert csrf is not None
        data = {"csrf": csrf.group(1), "team": team.slug, "username": "admin", "password": PASSWORD}
        assert c.post("/sign-in", data=data).status_code == 303
        yield c


def token(client: TestClient) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/procedures").text)
    assert found is not None
    return found.group(1)


def test_a_bad_value_is_shown_beside_its_input_and_nothing_is_made(client: TestClient) -> None:
    reply = client.post(
        "/procedures/lead/processes/new",
        data={"csrf": token(client), "data.score": "many", "record.data.email": "not an email"},
    )
    assert reply.status_code == 422
    assert re.search(r'id="data-score-error">score must be a whole number<', reply.text)
    assert 'value="many"' in reply.text  # what was typed is kept
    again = client.post(
        "/procedures/lead/processes/new",
        data={"csrf": token(client), "data.score": "7", "record.data.email": "not an email"},
    )
    assert again.status_code == 422
    assert 'id="record-data-email-error"' in again.text  # the record's field
    assert "LEAD-" not in client.get("/procedures/lead/processes?attribute=score&value=7").text


def test_an_automations_mistakes_are_shown_at_the_box_they_are_in(client: TestClient) -> None:
    reply = client.post(
        "/procedures/lead/automations/new",
        data={"csrf": token(client), "name": "broken", "trigger_type": "manual",
              "steps": '[{"name": "s", "type": "http", "method": "POST", "url": "{{ data.( }}"}]',
              "maxAttempts": "2", "backoffSeconds": "1"},
    )  # fmt: skip
    assert reply.status_code == 422
    assert re.search(r'<p class="error" id="steps-error">[^<]+<small>\(steps\[0\]', reply.text)
    not_json = client.post(
        "/procedures/lead/automations/new",
        data={"csrf": token(client), "name": "broken", "trigger_type": "manual", "steps": "["},
    )
    assert not_json.status_code == 422 and 'id="steps-error">steps is not JSON' in not_json.text
    no_state = client.post(
        "/procedures/lead/automations/new",
        data={"csrf": token(client), "name": "broken", "trigger_type": "state_reached", "steps": "[]"},
    )
    assert no_state.status_code == 422 and 'id="trigger-error">' in no_state.text


def test_a_filter_that_cannot_apply_says_why_on_the_table(client: TestClient) -> None:
    reply = client.get("/procedures/lead/processes?attribute=score&value=abc")
    assert reply.status_code == 200 and "score must be a whole number" in reply.text


def test_the_control_panel_counts_what_its_filter_finds(
    sqlite_services: Services, team: Team, client: TestClient
) -> None:
    for name in ("Ann", "Bo"):
        sqlite_services.run(
            create_process, team.caller, "ticket", CreateProcess.model_validate({"data": {"subject": name}})
        )
    assert client.get("/control-panel/count?procedure=ticket").json() == {"count": 2, "more": False}
    assert client.get("/control-panel/count?procedure=ticket&status=COMPLETED").json()["count"] == 0
    refused = client.get("/control-panel/count?procedure=ticket&state=NOPE")
    assert refused.status_code == 422 and "NOPE" in refused.json()["error"]


def test_a_jobs_failed_entries_download_as_csv(
    sqlite_services: Services, team: Team, client: TestClient
) -> None:
    _, job = sqlite_services.run(
        submit_job, team.caller, "lead", [{"id": "no-such-lead", "data": {"score": "x"}}], kind="update"
    )
    page = client.get(f"/jobs/{job['id']}")
    assert page.status_code == 200 and "score" in page.text and f"/jobs/{job['id']}/failed.csv" in page.text
    assert client.get(f"/jobs/{job['id']}?after=%C2%B2").status_code == 200  # a digit int() refuses
    reply = client.get(f"/jobs/{job['id']}/failed.csv")
    assert reply.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(reply.text)))
    assert [(r["index"], r["status"]) for r in rows] == [("0", "INVALID")]
    assert "score" in rows[0]["errors"] and '"no-such-lead"' in rows[0]["item"]


def test_a_refused_move_gives_the_board_its_reason(
    sqlite_services: Services, team: Team, client: TestClient
) -> None:
    _, lead = sqlite_services.run(
        create_process, team.caller, "lead", CreateProcess.model_validate({"state": "CONVERTED"})
    )
    reply = client.post(
        f"/procedures/lead/processes/{lead['id']}/state",
        data={"state": "NEW"},
        headers={"accept": "application/json", "x-csrf-token": token(client)},
    )
    assert reply.status_code == 422
    reason = "lead cannot move from CONVERTED to NEW"
    assert reply.json() == {"ok": False, "message": reason, "reasons": [reason]}
    by_form = client.post(  # without the board's script: back to the board, which says why
        f"/procedures/lead/processes/{lead['id']}/state",
        data={"state": "NEW", "next": "/procedures/lead/board", "csrf": token(client)},
    )
    assert by_form.status_code == 303 and by_form.headers["location"].startswith("/procedures/lead/board?")
    assert f"Not moved:</p><ul><li>{reason}</li>" in client.get(by_form.headers["location"]).text


def test_a_job_is_aborted_from_its_page(sqlite_services: Services, team: Team, client: TestClient) -> None:
    _, lead = sqlite_services.run(create_process, team.caller, "lead", CreateProcess.model_validate({}))
    _, job = sqlite_services.run(
        submit_job, team.caller, "lead", [{"id": lead["id"], "data": {"score": 3}}], kind="update"
    )  # no runner in this process: it waits
    assert "Abort" in client.get(f"/jobs/{job['id']}").text
    reply = client.post(f"/jobs/{job['id']}/abort", data={"csrf": token(client)})
    assert reply.status_code == 303 and reply.headers["location"] == f"/jobs/{job['id']}"
    page = client.get(f"/jobs/{job['id']}").text
    assert 'id="job-status">ABORTED<' in page and "Abort" not in page


def test_the_search_box_finds_processes_by_the_start_of_their_key(
    sqlite_services: Services, team: Team, client: TestClient
) -> None:
    for _ in range(12):
        sqlite_services.run(create_process, team.caller, "ticket", CreateProcess.model_validate({}))
    whole = client.get("/procedures/ticket/processes?q=TKT-1")
    assert whole.status_code == 303 and whole.headers["location"].startswith("/processes/")  # it exists
    listed = re.findall(r">(TKT-\d+)</a>", client.get("/procedures/ticket/processes?q=TKT-").text)
    assert len(listed) >= 12 and all(k.startswith("TKT-") for k in listed)
    assert re.findall(r">(TKT-\d+)</a>", client.get("/procedures/ticket/processes?q=TKT-99").text) == []
    page, _ = sqlite_services.run(
        list_processes,
        team.caller,
        "ticket",
        ListProcesses(limit=100),
        cursor_key=b"k" * 16,
        key_prefix="TKT-1",
    )
    found = sorted(p["data"]["ticket_id"] for p in page)
    assert found and all(k == "TKT-1" or k.startswith("TKT-1") for k in found)
    assert "TKT-2" not in found and "TKT-10" in found
