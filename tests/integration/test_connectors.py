"""Connectors on SQLite and PostgreSQL against fake HubSpot and Dropbox servers: a lead reaching CONVERTED
makes one contact and links it, a later run updates it, a contact already there is adopted, a Dropbox
upload is stored with its shared link, a run killed between a create and its result makes nothing twice,
and no credential is ever in clear in a reply, a log line or the database."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from procession.domain.clock import now_ms
from procession.domain.errors import Conflict, Invalid
from procession.engine import runs as engine_runs
from procession.services.automations import get_run, run_automation
from procession.services.connectors import (
    ConnectorInput,
    create_connector,
    delete_connector,
    get_connector,
    list_connectors,
    process_links,
    update_connector,
)
from procession.services.files import store_file
from procession.services.reads import process_history
from procession.store import tables as t
from tests.conftest import Team
from tests.fakes.dropbox import FakeDropbox
from tests.fakes.hubspot import FakeHubSpot
from tests.integration.automation import create, define, runs, update, work

QUICK = {"maxAttempts": 4, "backoffSeconds": 0.05}
TOKEN = "pat-na1-7c1e55f0-secret-token"
RECORD = {"data": {"phone_number": "+33612345678", "email": "ada@example.com"}}


@pytest.fixture
def hubspot() -> Iterator[FakeHubSpot]:
    with FakeHubSpot(token=TOKEN) as fake:
        yield fake


@pytest.fixture
def dropbox() -> Iterator[FakeDropbox]:
    with FakeDropbox(token=TOKEN) as fake:
        yield fake


def connector(team: Team, **body: Any) -> dict[str, Any]:
    cmd = ConnectorInput.model_validate(body)
    return team.services.run(create_connector, team.id, cmd, vault=team.services.vault)


def upsert(**more: Any) -> dict[str, Any]:
    properties = {"email": "process.record.email", "firstname": "process.data.firstname",
                  "lastname": "process.data.lastname", "score": "process.data.score"}  # fmt: skip
    return {"name": "crm", "type": "hubspot.upsert", "connector": "crm", "object": "contacts",
            "properties": properties} | more  # fmt: skip


def on_converted(*steps: dict[str, Any], name: str = "a") -> dict[str, Any]:
    return {"name": name, "trigger": {"type": "state_reached", "state": "CONVERTED"}, "steps": list(steps),
            "retry": QUICK}  # fmt: skip


def links(team: Team, process_id: str) -> list[dict[str, Any]]:
    return team.services.run(process_links, team.caller, "lead", (process_id,))


def lead(team: Team, **data: Any) -> str:
    data = {"firstname": "Ada", "lastname": "Lovelace", "score": 1, **data}
    return str(create(team, {"record": RECORD, "data": data})["id"])


def again(team: Team, process_id: str, automation: str = "a") -> None:
    """The automation run once more for the process (a converted lead stays converted)."""
    team.services.run(run_automation, team.caller, "lead", process_id, automation)


def test_a_converted_lead_makes_one_contact_linked_and_a_second_trigger_updates_it(
    team: Team, hubspot: FakeHubSpot
) -> None:
    connector(team, name="crm", kind="hubspot", baseUrl=hubspot.url, credentials={"token": TOKEN})
    define(team, on_converted(upsert()))
    pid = lead(team, score=7)
    update(team, pid, {"state": "CONVERTED"})
    work(team)
    (contact,) = hubspot.records("contacts")
    assert (
        contact["properties"].items()
        >= {"email": "ada@example.com", "firstname": "Ada", "score": "7"}.items()
    )
    (link,) = links(team, pid)
    assert (
        link["externalId"] == contact["id"]
        and link["objectType"] == "contacts"
        and link["connector"] == "crm"
    )
    assert link["url"] == f"{hubspot.url}/crm/v3/objects/contacts/{contact['id']}"
    first = link["firstSyncedAt"]
    update(team, pid, {"data": {"score": 9}})
    again(team, pid)
    work(team)
    (contact,) = hubspot.records("contacts")  # updated, not made again
    assert contact["properties"]["score"] == "9"
    (link,) = links(team, pid)
    assert link["firstSyncedAt"] == first and link["lastSyncedAt"] > first
    methods = [(r.method, r.path) for r in hubspot.received()]
    assert methods == [
        ("POST", "/crm/v3/objects/contacts"),
        ("PATCH", f"/crm/v3/objects/contacts/{contact['id']}"),
    ]
    second = runs(team)[-1]
    assert second["outputs"]["crm"]["created"] is False and second["outputs"]["crm"]["id"] == contact["id"]
    history, _ = team.services.run(process_history, team.caller, "lead", (pid,))
    linked = [e for e in history if e["type"] == "process.linked"]
    assert len(linked) == 1  # made once; the update changed nothing of the link


def test_another_automation_on_the_same_connector_and_object_updates_the_linked_contact(
    team: Team, hubspot: FakeHubSpot
) -> None:
    connector(team, name="crm", kind="hubspot", baseUrl=hubspot.url, credentials={"token": TOKEN})
    define(team, on_converted(upsert()))
    define(team, {"name": "b", "trigger": {"type": "attribute_changed", "attribute": "city"},
                  "steps": [upsert(properties={"city": "process.data.city"}, idProperty=None)]})  # fmt: skip
    pid = lead(team)
    update(team, pid, {"state": "CONVERTED"})
    work(team)
    update(team, pid, {"data": {"city": "Lyon"}})
    work(team)
    (contact,) = hubspot.records("contacts")
    assert contact["properties"]["city"] == "Lyon" and contact["properties"]["email"] == "ada@example.com"


def test_a_contact_already_at_hubspot_is_adopted(team: Team, hubspot: FakeHubSpot) -> None:
    existing = hubspot.add("contacts", {"email": "ada@example.com", "firstname": "A."})
    connector(team, name="crm", kind="hubspot", baseUrl=hubspot.url, credentials={"token": TOKEN})
    define(team, on_converted(upsert()))
    pid = lead(team)
    update(team, pid, {"state": "CONVERTED"})
    work(team)
    (contact,) = hubspot.records("contacts")
    assert contact["id"] == existing and contact["properties"]["firstname"] == "Ada"
    (link,) = links(team, pid)
    assert link["externalId"] == existing
    (run,) = runs(team)
    assert run["status"] == "SUCCEEDED" and run["outputs"]["crm"]["adopted"] is True
    detail = team.services.run(get_run, team.id, run["id"])
    assert [(a["outcome"], a["statusCode"]) for a in detail["attempts"]] == [("CONTINUE", 409), ("OK", 200)]


def test_a_run_killed_between_the_create_and_its_result_makes_nothing_twice(
    team: Team, hubspot: FakeHubSpot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker dies after HubSpot made the contact (and the deal) but before the step's result is
    written; once its lease is over the run is taken again, and finds both: the contact by the 409 on its
    email, the deal by a search on its idProperty."""
    connector(team, name="crm", kind="hubspot", baseUrl=hubspot.url, credentials={"token": TOKEN})
    deal = {"name": "deal", "type": "hubspot.upsert", "connector": "crm", "object": "deals",
            "idProperty": "procession_id",
            "properties": {"dealname": "'Lead ' + process.data.lead_id", "dealstage": "'appointmentscheduled'",
                           "pipeline": "'default'", "procession_id": "process.id"}}  # fmt: skip
    define(team, on_converted(upsert(), deal))
    pid = lead(team)
    update(team, pid, {"state": "CONVERTED"})

    class Killed(BaseException):
        """The worker's process ends here."""

    def die(*args: Any) -> None:
        raise Killed

    monkeypatch.setattr(engine_runs, "_record", die)
    with pytest.raises(Killed):
        work(team)
    monkeypatch.undo()
    assert len(hubspot.records("contacts")) == 1 and len(hubspot.records("deals")) == 1
    assert links(team, pid) == []  # nothing of the run was written
    with team.services.engine.begin() as conn:  # the lease runs out
        conn.execute(t.runs.update().where(t.runs.c.team_id == team.id).values(lease_until=now_ms() - 1))
        conn.execute(t.tasks.update().where(t.tasks.c.team_id == team.id).values(wake_at=now_ms() - 1))
    work(team)
    (run,) = runs(team)
    assert run["status"] == "SUCCEEDED"
    assert len(hubspot.records("contacts")) == 1 and len(hubspot.records("deals")) == 1
    (contact,), (made,) = hubspot.records("contacts"), hubspot.records("deals")
    assert {k["objectType"]: k["externalId"] for k in links(team, pid)} == {
        "contacts": contact["id"],
        "deals": made["id"],
    }


def test_a_dropped_reply_to_a_create_is_followed_by_adoption_not_a_second_contact(
    team: Team, hubspot: FakeHubSpot
) -> None:
    connector(team, name="crm", kind="hubspot", baseUrl=hubspot.url, credentials={"token": TOKEN})
    define(team, on_converted(upsert()))
    hubspot.lose_replies(1)  # made there, but the reply is lost
    pid = lead(team)
    update(team, pid, {"state": "CONVERTED"})
    work(team)
    assert runs(team)[0]["status"] == "SUCCEEDED"
    (contact,) = hubspot.records("contacts")
    (link,) = links(team, pid)
    assert link["externalId"] == contact["id"]
    assert [r.method for r in hubspot.received()] == ["POST", "POST", "PATCH"]  # create, create (409), update


def test_hubspot_rate_limits_are_waited_out_and_a_bad_token_fails_the_run(
    team: Team, hubspot: FakeHubSpot
) -> None:
    connector(team, name="crm", kind="hubspot", baseUrl=hubspot.url, credentials={"token": TOKEN})
    connector(team, name="wrong", kind="hubspot", baseUrl=hubspot.url, credentials={"token": "nope"})
    define(team, on_converted(upsert()))
    define(team, on_converted(upsert(connector="wrong"), name="b"))
    hubspot.throttle(1, retry_after="1")
    pid = lead(team)
    update(team, pid, {"state": "CONVERTED"})
    work(team)
    by_name = {r["automationId"]: r for r in runs(team)}
    statuses = sorted(r["status"] for r in by_name.values())
    assert statuses == ["FAILED", "SUCCEEDED"]
    failed = next(r for r in by_name.values() if r["status"] == "FAILED")
    assert "401" in failed["error"] and len(hubspot.records("contacts")) == 1
    posts = [
        r for r in hubspot.received("/crm/v3/objects/contacts") if r.headers["authorization"].endswith(TOKEN)
    ]
    assert posts[-1].at - posts[0].at >= 0.9  # Retry-After honoured


def test_a_dropbox_upload_stores_the_file_and_its_shared_link(team: Team, dropbox: FakeDropbox) -> None:
    connector(team, name="box", kind="dropbox", baseUrl=dropbox.url, credentials={"token": TOKEN})
    upload = {"name": "export", "type": "dropbox.upload", "connector": "box",
              "path": "/Leads/{{ process.data.lead_id }}.json"}  # fmt: skip
    sheet = {"name": "sheet", "type": "dropbox.upload", "connector": "box", "content": "csv",
             "path": "/Leads/{{ process.data.lead_id }}.csv"}  # fmt: skip
    define(team, on_converted(upload, sheet))
    pid = lead(team, score=3)
    update(team, pid, {"state": "CONVERTED"})
    dropbox.throttle(1)
    work(team)
    (run,) = runs(team)
    assert run["status"] == "SUCCEEDED", run["error"]
    lead_id = run["outputs"]["export"]["path"].rsplit("/", 1)[-1].removesuffix(".json")
    files = dropbox.files()
    assert orjson.loads(files[f"/Leads/{lead_id}.json"])["id"] == pid
    header, row = files[f"/Leads/{lead_id}.csv"].decode().splitlines()
    assert "data.score" in header.split(",") and "3" in row.split(",")
    shared = dropbox.shared()
    assert run["outputs"]["export"]["url"] == shared[f"/leads/{lead_id.lower()}.json"]
    assert {k["objectType"]: k["url"] for k in links(team, pid)} == {
        f"file:/leads/{lead_id.lower()}.json": shared[f"/leads/{lead_id.lower()}.json"],
        f"file:/leads/{lead_id.lower()}.csv": shared[f"/leads/{lead_id.lower()}.csv"],
    }
    update(team, pid, {"data": {"score": 4}})
    again(team, pid)
    work(team)
    assert len(dropbox.files()) == 2 and dropbox.uploads == 4  # overwritten in place, the same links
    assert b'"score": 4' in dropbox.files()[f"/Leads/{lead_id}.json"]
    assert len(links(team, pid)) == 2 and dropbox.count("/2/sharing/create_shared_link_with_settings") == 2


def test_an_uploaded_file_goes_to_dropbox(team: Team, dropbox: FakeDropbox) -> None:
    stored = team.services.run(store_file, team.id, team.services.settings.files_dir, content=b"%PDF-1.7 contract",
                               filename="contract.pdf", filetype="application/pdf")  # fmt: skip
    connector(team, name="box", kind="dropbox", baseUrl=dropbox.url, credentials={"token": TOKEN})
    step = {"name": "up", "type": "dropbox.upload", "connector": "box", "content": "file",
            "file": f"'{stored['id']}'", "path": "/Contracts/{{ process.id }}.pdf"}  # fmt: skip
    define(team, on_converted(step))
    pid = lead(team)
    update(team, pid, {"state": "CONVERTED"})
    work(team)
    assert dropbox.files() == {f"/Contracts/{pid}.pdf": b"%PDF-1.7 contract"}


def test_an_http_step_on_a_connector_uses_its_base_url_and_auth_header(
    team: Team, hubspot: FakeHubSpot
) -> None:
    connector(team, name="api", kind="http", baseUrl=hubspot.url, settings={"authHeader": "Authorization"},
              credentials={"auth": f"Bearer {TOKEN}"})  # fmt: skip
    step = {"name": "read", "type": "http", "connector": "api", "method": "POST",
            "url": "/crm/v3/objects/contacts/search", "body": "{'filterGroups': []}"}  # fmt: skip
    define(team, on_converted(step))
    update(team, lead(team), {"state": "CONVERTED"})
    work(team)
    (run,) = runs(team)
    assert run["status"] == "SUCCEEDED" and run["outputs"]["read"] == {"total": 0, "results": []}
    detail = team.services.run(get_run, team.id, run["id"])
    assert detail["attempts"][0]["request"]["headers"]["Authorization"] == "********"


def test_connectors_are_managed_and_steps_are_checked_against_them(team: Team, hubspot: FakeHubSpot) -> None:
    made = connector(team, name="crm", kind="hubspot", baseUrl=hubspot.url, credentials={"token": TOKEN})
    assert made["credentials"] == {"token": True} and made["version"] == 1
    assert team.services.run(get_connector, team.id, "crm")["id"] == made["id"]
    with pytest.raises(Conflict):
        connector(team, name="crm", kind="hubspot")
    with pytest.raises(Invalid) as caught:
        connector(team, name="x", kind="http", credentials={"token": "t"})
    assert {e.field for e in caught.value.errors} == {"baseUrl", "credentials.token"}
    with pytest.raises(Invalid) as caught:
        define(team, on_converted(upsert(connector="nope"), {"name": "up", "type": "dropbox.upload",
                                                             "connector": "crm", "path": "x"}))  # fmt: skip
    assert {e.code for e in caught.value.errors} >= {"unknown_connector", "wrong_connector"}
    changed = team.services.run(update_connector, team.id, "crm", ConnectorInput.model_validate(
        {"name": "crm2", "kind": "hubspot", "baseUrl": hubspot.url, "version": 1}), vault=team.services.vault)  # fmt: skip
    assert changed["credentials"] == {"token": True} and changed["name"] == "crm2"  # the token kept
    define(team, on_converted(upsert(connector="crm2")))
    with pytest.raises(Conflict):
        team.services.run(delete_connector, team.id, "crm2")
    assert [c["name"] for c in team.services.run(list_connectors, team.id)] == ["crm2"]


def test_no_credential_is_in_clear_in_replies_logs_or_the_database(
    team: Team, hubspot: FakeHubSpot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    connector(team, name="crm", kind="hubspot", baseUrl=hubspot.url, credentials={"token": TOKEN})
    connector(team, name="bad", kind="hubspot", baseUrl="http://127.0.0.1:9", credentials={"token": TOKEN})
    define(team, on_converted(upsert(), upsert(name="down", connector="bad")))
    pid = lead(team)
    update(team, pid, {"state": "CONVERTED"})
    work(team)
    replies = [team.services.run(list_connectors, team.id), team.services.run(get_run, team.id, runs(team)[0]["id"]),
               links(team, pid), team.services.run(process_history, team.caller, "lead", (pid,))]  # fmt: skip
    assert TOKEN not in orjson.dumps(replies).decode()
    assert TOKEN not in caplog.text
    dump = []
    with team.services.engine.connect() as conn:
        for table in t.metadata.sorted_tables:
            dump += [repr(tuple(row)) for row in conn.execute(sa.select(table))]
    assert dump and not any(TOKEN in row for row in dump)
    assert any("gAAAA" in row for row in dump)  # sealed (a Fernet token), not left out
