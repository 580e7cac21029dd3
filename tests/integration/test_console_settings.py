"""Console settings without a browser: connectors whose credentials are never shown back (kept when left
blank, removed when asked), webhook subscriptions (the secret shown once, mistakes shown at their box, the
delivery log with each attempt's response, a replay), and users whose role changes or who are removed,
never the last admin."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from procession.api.app import create_app
from procession.bootstrap import Services
from procession.services.accounts import set_password
from procession.services.commands import CreateProcess
from procession.services.connectors import ConnectorInput, create_connector, get_connector
from procession.services.processes import create_process
from procession.services.records import get_record
from procession.services.webhooks import WebhookInput, create_webhook, get_webhook, list_deliveries
from tests.conftest import Team, make_team
from tests.fakes.receiver import Receiver, Reply
from tests.integration.test_webhooks import deliver

PASSWORD = "admin password 1"
SECRET = "Bearer very-secret-value-42"


@pytest.fixture(scope="module")
def team(sqlite_services: Services) -> Team:
    team = make_team(sqlite_services)
    sqlite_services.run(set_password, team.id, "admin", PASSWORD)
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
    found = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/settings").text)
    assert found is not None
    return found.group(1)


def test_a_connectors_credentials_are_never_shown_back(client: TestClient, team: Team) -> None:
    form = {
        "csrf": token(client), "name": "crm", "kind": "http", "baseUrl": "http://127.0.0.1:9/api",
        "settings.authHeader": "X-Auth", "credentials.auth": SECRET, "credentials.token": "",
    }  # fmt: skip
    made = client.post("/settings/connectors", data=form)
    assert made.status_code == 303
    listed = client.get("/settings/connectors").text
    assert "crm" in listed and "auth: <strong>set</strong>" in listed and SECRET not in listed
    connector = team.services.run(get_connector, team.id, "crm")
    page = client.get(f"/settings/connectors/{connector['id']}").text
    assert SECRET not in page and "(set)" in page and "X-Auth" in page
    kept = client.post(
        f"/settings/connectors/{connector['id']}",
        data={"csrf": token(client), "name": "crm2", "baseUrl": "http://127.0.0.1:9/v2",
              "settings.authHeader": "X-Auth", "credentials.auth": "", "version": "1"},
    )  # fmt: skip
    assert kept.status_code == 303
    now = team.services.run(get_connector, team.id, connector["id"])
    assert (now["name"], now["baseUrl"], now["credentials"]) == (
        "crm2",
        "http://127.0.0.1:9/v2",
        {"auth": True},
    )
    stale = client.post(  # the version read is sent back: a change made meanwhile is not overwritten
        f"/settings/connectors/{connector['id']}",
        data={"csrf": token(client), "name": "crm3", "baseUrl": "http://127.0.0.1:9", "version": "1"},
    )
    assert stale.status_code == 409 and "version" in stale.text
    removed = client.post(
        f"/settings/connectors/{connector['id']}",
        data={"csrf": token(client), "name": "crm2", "baseUrl": "http://127.0.0.1:9/v2", "remove.auth": "on"},
    )
    assert removed.status_code == 303
    assert team.services.run(get_connector, team.id, "crm2")["credentials"] == {"auth": False}
    gone = client.post(f"/settings/connectors/{connector['id']}/delete", data={"csrf": token(client)})
    assert gone.status_code == 303 and "crm2" not in client.get("/settings/connectors").text


def test_a_connectors_mistakes_are_shown_at_their_box_and_no_secret_is_kept_in_the_form(
    client: TestClient,
) -> None:
    reply = client.post(
        "/settings/connectors",
        data={"csrf": token(client), "name": "bad name!", "kind": "http", "credentials.auth": SECRET},
    )
    assert reply.status_code == 422
    assert 'id="c-name-error"' in reply.text and SECRET not in reply.text
    no_url = client.post(
        "/settings/connectors", data={"csrf": token(client), "name": "nourl", "kind": "http"}
    )
    assert no_url.status_code == 422 and re.search(r'id="c-baseUrl-error">[^<]*baseUrl', no_url.text)
    local = client.post(
        "/settings/connectors",
        data={"csrf": token(client), "name": "meta", "kind": "http", "baseUrl": "javascript:alert(1)"},
    )
    assert local.status_code == 422 and 'id="c-baseUrl-error"' in local.text


def test_a_webhooks_secret_is_shown_once_and_its_log_replays_a_delivery(
    client: TestClient, team: Team
) -> None:
    with Receiver() as receiver:
        receiver.script("/hook", Reply(500, body=b"down for maintenance"))
        for sent, box in (({"url": "ftp://nowhere", "eventTypes": ["process.created"]}, "url"),
                          ({"url": receiver.url, "timeoutSeconds": "99"}, "eventTypes")):  # fmt: skip
            bad = client.post("/settings/webhooks", data={"csrf": token(client)} | sent)
            assert bad.status_code == 422 and f'id="w-{box}-error"' in bad.text
        made = client.post(
            "/settings/webhooks",
            data={"csrf": token(client), "url": f"{receiver.url}/hook", "eventTypes": ["process.created"],
                  "enabled": "on", "timeoutSeconds": "5", "maxAttempts": "1", "backoffSeconds": "0"},
        )  # fmt: skip
        assert made.status_code == 200
        secret = re.search(r'<code id="new-secret">(whsec_[^<]+)</code>', made.text)
        assert secret is not None
        hook_id = re.search(r'href="/settings/webhooks/([^"]+)">Open it', made.text)
        assert hook_id is not None
        page_url = f"/settings/webhooks/{hook_id.group(1)}"
        assert secret.group(1) not in client.get("/settings/webhooks").text
        assert secret.group(1) not in client.get(page_url).text
        team.services.run(create_process, team.caller, "ticket", CreateProcess.model_validate({}))
        deliver(team)
        log = client.get(page_url).text
        assert re.search(r'badge failed">FAILED<', log) and "down for maintenance" in log
        delivery = team.services.run(list_deliveries, team.id, hook_id.group(1))[0]
        replayed = client.post(f"{page_url}/deliveries/{delivery['id']}/replay", data={"csrf": token(client)})
        assert replayed.status_code == 303
        deliver(team)
        log = client.get(replayed.headers["location"]).text
        assert f"Delivery {delivery['id']} sent again." in log
        assert re.search(r'badge succeeded">SUCCEEDED<', log) and "each attempt" in log
        assert len(receiver.received("/hook")) == 2
        off = client.post(
            page_url,
            data={"csrf": token(client), "url": f"{receiver.url}/hook", "eventTypes": ["process.created"],
                  "timeoutSeconds": "5", "backoffSeconds": "0", "description": "paused"},
        )  # fmt: skip
        assert off.status_code == 303
        page = client.get(page_url).text
        assert "Off since" in page and "paused" in page
        for odd in ("before=%C2%B2", "before=99999999999999999999", "status=NOPE"):  # digits int() refuses
            assert client.get(f"{page_url}?{odd}").status_code == 200
        refused = client.post(f"{page_url}/replay-failed", data={"csrf": token(client)})
        assert refused.status_code == 409 and "disabled" in refused.text
        assert client.post(f"{page_url}/delete", data={"csrf": token(client)}).status_code == 303
        assert client.get(page_url).status_code == 404


def test_an_admin_changes_roles_and_removes_users_but_never_the_last_admin(
    client: TestClient, team: Team
) -> None:
    demoted = client.post("/settings/users/admin/role", data={"csrf": token(client), "role": "member"})
    assert demoted.status_code == 409 and "at least one admin" in demoted.text
    removed = client.post("/settings/users/admin/remove", data={"csrf": token(client)})
    assert removed.status_code == 409 and "at least one admin" in removed.text
    promoted = client.post("/settings/users/rahul.dravid/role", data={"csrf": token(client), "role": "admin"})
    assert promoted.status_code == 303
    assert re.search(
        r'<tr id="user-rahul.dravid">.*?<option selected>admin</option>',
        client.get("/settings/users").text,
        re.S,
    )
    gone = client.post("/settings/users/rahul.dravid/remove", data={"csrf": token(client)})
    assert gone.status_code == 303 and 'id="user-rahul.dravid"' not in client.get("/settings/users").text


def test_another_teams_admin_finds_none_of_it(sqlite_services: Services, team: Team) -> None:
    """Every new page and form, given the first team's ids by another team's admin: a 404, nothing changed."""
    connector = team.services.run(
        create_connector, team.id, ConnectorInput(name="mine", kind="http", baseUrl="http://127.0.0.1:9"),
        vault=team.services.vault,
    )  # fmt: skip
    hook = team.services.run(
        create_webhook, team.id, WebhookInput(url="http://127.0.0.1:9/h", eventTypes=["process.created"])
    )
    _, deal = team.services.run(
        create_process, team.caller, "ticket",
        CreateProcess.model_validate({"record": {"data": {"phone_number": "7701214830"}}}),
    )  # fmt: skip
    other = make_team(sqlite_services)
    sqlite_services.run(set_password, other.id, "admin", PASSWORD)
    with TestClient(create_app(sqlite_services), follow_redirects=False) as c:
        csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/sign-in").text)
        assert csrf is not None
        data = {"csrf": csrf.group(1), "team": other.slug, "username": "admin", "password": PASSWORD}
        assert c.post("/sign-in", data=data).status_code == 303
        mine = {"csrf": token(c)}
        for path in (f"/settings/connectors/{connector['id']}", f"/settings/webhooks/{hook['id']}",
                     f"/processes/{deal['id']}/edit"):  # fmt: skip
            assert c.get(path).status_code == 404, path
        for path, form in (
            (f"/settings/connectors/{connector['id']}", {"name": "taken", "baseUrl": "http://127.0.0.1:9"}),
            (f"/settings/connectors/{connector['id']}/delete", {}),
            (f"/settings/webhooks/{hook['id']}", {"url": "http://127.0.0.1:9/x", "eventTypes": "run.failed"}),
            (f"/settings/webhooks/{hook['id']}/replay-failed", {}),
            (f"/settings/webhooks/{hook['id']}/deliveries/1/replay", {}),
            (f"/settings/webhooks/{hook['id']}/delete", {}),
            (f"/processes/{deal['id']}/edit", {"data.subject": "taken"}),
            (f"/processes/{deal['id']}/record", {"record.data.email": "taken@example.com"}),
            (f"/settings/users/{team.caller.user_id}/role", {"role": "member"}),
            (f"/settings/users/{team.caller.user_id}/remove", {}),
        ):
            assert c.post(path, data=mine | form).status_code == 404, path
    assert team.services.run(get_connector, team.id, connector["id"])["name"] == "mine"
    assert team.services.run(get_webhook, team.id, hook["id"])["url"] == "http://127.0.0.1:9/h"
    record = team.services.run(get_record, team.caller, deal["record"])
    assert "email" not in record["data"]
