"""Connectors over HTTP: managed by admins, credentials write-only (never in a reply), a step on one run by
the server's worker, and the link it made read with the process and in its history."""

from __future__ import annotations

import time

from tests.e2e.conftest import Api
from tests.fakes.hubspot import FakeHubSpot

TOKEN = "pat-na1-e2e-0f4c-secret"


def test_connectors_are_write_only_and_their_links_are_shown_with_the_process(api: Api) -> None:
    http = api.http
    with FakeHubSpot(token=TOKEN) as hubspot:
        body = {"name": "crm", "kind": "hubspot", "baseUrl": hubspot.url, "credentials": {"token": TOKEN}}
        r = http.post("/v1/admin/connectors", json=body)
        assert r.status_code == 201, r.text
        made = r.json()["_data"]
        assert made["credentials"] == {"token": True} and TOKEN not in r.text
        with api.client(api.team.key(role="member", user=None)) as member:
            assert member.get("/v1/admin/connectors").status_code == 403
        bad = http.post("/v1/admin/connectors", json={"name": "x", "kind": "ftp"})
        assert bad.status_code == 422
        assert http.post("/v1/admin/connectors", json=body).status_code == 409
        steps = [{"name": "crm", "type": "hubspot.upsert", "connector": "crm", "object": "contacts",
                  "properties": {"email": "'ada@example.com'", "firstname": "'Ada'"}}]  # fmt: skip
        automation = {"name": "to_crm", "trigger": {"type": "manual"}, "steps": steps}
        assert http.post("/v1/admin/procedures/lead/automations", json=automation).status_code == 201
        process = http.post("/v1/ext/procedure/lead/process", json={"data": {}}).json()["_data"]
        base = f"/v1/ext/procedure/lead/process/{process['id']}"
        run = http.post(f"{base}/automations/to_crm/run").json()["_data"]
        deadline = time.monotonic() + 20
        while (status := http.get(f"/v1/ext/runs/{run['id']}").json()["_data"]["status"]) != "SUCCEEDED":
            assert status in ("PENDING", "RUNNING") and time.monotonic() < deadline, status
            time.sleep(0.1)
        (contact,) = hubspot.records("contacts")
        (link,) = http.get(f"{base}/links").json()["_data"]
        assert link["externalId"] == contact["id"] and link["connector"] == "crm"
        history = http.get(f"{base}/events").json()["_data"]
        assert [e for e in history if e["type"] == "process.linked"]
        seen = [http.get("/v1/admin/connectors").text, http.get(f"/v1/admin/connectors/{made['id']}").text,
                http.get(f"/v1/ext/runs/{run['id']}").text, http.get(f"{base}/events").text]  # fmt: skip
        assert not any(TOKEN in text for text in seen)
        changed = http.put(
            f"/v1/admin/connectors/{made['id']}", json={**body, "credentials": {}, "version": 1}
        )
        assert changed.status_code == 200 and changed.json()["_data"]["credentials"] == {"token": True}
        assert http.delete("/v1/admin/connectors/crm").status_code == 409  # an automation names it
