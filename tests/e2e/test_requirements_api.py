"""Requirements over HTTP: set on a procedure through the admin API, a refused save is a 422 whose body
names the unmet requirement and the fields it reads, the process is left as it was, and the process's
requirements say what blocks each state."""

from __future__ import annotations

from tests.e2e.conftest import Api

LEAD = "/v1/ext/procedure/lead/process"
KEYS = (
    "shortId",
    "label",
    "attributes",
    "primaryKey",
    "states",
    "initialState",
    "transitions",
    "entity",
    "version",
)


def test_a_gate_refuses_a_move_over_http_naming_the_requirement_and_what_it_reads(api: Api) -> None:
    lead = api.http.post(LEAD, json={"record": {"data": {"phone_number": "+33600000001"}}}).json()["_data"]
    definition = api.http.get(f"/v1/admin/procedures/{lead['procedure']}").json()["_data"]
    body = {k: definition[k] for k in KEYS}
    body["attributes"] = [{k: v for k, v in a.items() if k != "procedure"} for a in body["attributes"]]
    body["requirements"] = [
        {
            "name": "has_email",
            "use": "gate",
            "state": "CONVERTED",
            "condition": "has(process.record.email) && process.record.email != ''",
            "message": "a converted lead needs an email",
        }
    ]
    saved = api.http.put(f"/v1/admin/procedures/{lead['procedure']}", json=body)
    assert saved.status_code == 200, saved.text

    refused = api.http.put(f"{LEAD}/{lead['id']}", json={"state": "CONVERTED", "data": {"score": 7}})
    assert refused.status_code == 422, refused.text
    (error,) = refused.json()["_errors"]
    assert error["code"] == "requirement_unmet" and error["field"] == "state"
    assert all(part in error["message"] for part in ("has_email", "record.email", "needs an email"))
    after = api.http.get(f"{LEAD}/{lead['id']}").json()["_data"]
    assert after["state"] == lead["state"] and "score" not in after["data"]  # nothing of the refused save
    assert after["version"] == lead["version"]

    found = api.http.get(f"{LEAD}/{lead['id']}/requirements")
    assert found.status_code == 200, found.text
    (requirement,) = found.json()["_data"]["requirements"]
    assert requirement["name"] == "has_email" and requirement["met"] is False
    assert requirement["reads"] == ["record.email"]

    with_email = api.http.post(
        LEAD, json={"record": {"data": {"phone_number": "+33600000002", "email": "ada@example.com"}}}
    ).json()["_data"]
    moved = api.http.put(f"{LEAD}/{with_email['id']}", json={"state": "CONVERTED"})
    assert moved.status_code == 200, moved.text
    assert moved.json()["_data"]["state"] == "CONVERTED"
