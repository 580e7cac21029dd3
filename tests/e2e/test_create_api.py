"""The Create Process API over HTTP: the specification's example and every error status."""

from __future__ import annotations

import json

from tests.e2e.conftest import Api

TED = {
    "data": {"firstname": "Ted", "lastname": "Mosby", "score": 5},
    "record": {"data": {"phone_number": "7701214822", "email": "ted.mosby@yahoo.com"}},
    "status": "COMPLETED",
    "state": "CONVERTED",
    "nextActionAt": 1618558867539,
    "assignedTo": "shane.warne",
}


def test_the_specification_example_creates_a_process(api: Api) -> None:
    r = api.http.post("/v1/ext/procedure/lead/process", json=TED)
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"_data", "_meta", "_errors"} and body["_errors"] == []
    p = body["_data"]
    assert p["data"]["firstname"] == "Ted" and p["data"]["lead_id"].startswith("LEAD-")
    assert (p["status"], p["state"]) == ("COMPLETED", "CONVERTED")
    assert p["record"] and p["entity"] and p["assignedTo"] == p["firstAssignedTo"]
    assert p["completedAt"] and p["lastAssignedAt"] and p["nextActionAt"] == 1618558867539


def test_idempotency_key_replays_and_refuses_a_different_body(api: Api) -> None:
    headers = {"Idempotency-Key": "abc"}
    first = api.http.post("/v1/ext/procedure/lead/process", json={"data": {"score": 1}}, headers=headers)
    again = api.http.post("/v1/ext/procedure/lead/process", json={"data": {"score": 1}}, headers=headers)
    other = api.http.post("/v1/ext/procedure/lead/process", json={"data": {"score": 2}}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["_data"]["id"] == again.json()["_data"]["id"]
    assert other.status_code == 409 and other.json()["_errors"][0]["code"] == "idempotency_mismatch"


def test_malformed_json_is_400(api: Api) -> None:
    r = api.http.post(
        "/v1/ext/procedure/lead/process", content=b'{"data": ', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["_errors"][0]["code"] == "malformed_json"
    r = api.http.post("/v1/ext/procedure/lead/process", json=[1, 2])
    assert r.status_code == 400


def test_missing_unknown_and_revoked_keys_get_the_same_401(api: Api) -> None:
    key = api.team.key()
    with api.team.uow() as uow:
        key_id = uow.keys.list()[-1]["id"]
    from procession.services.teams import revoke_key

    with api.client(key) as c:  # works until revoked; the revocation must be seen at once
        assert c.post("/v1/ext/procedure/lead/process", json={}).status_code == 201

    api.team.services.run(revoke_key, api.team.id, key_id)
    answers = []
    for token in (None, "prk_nonsense", key):
        with api.client(token) as c:
            r = c.post("/v1/ext/procedure/lead/process", json={})
            answers.append((r.status_code, r.json()["_errors"]))
    assert answers[0] == answers[1] == answers[2] and answers[0][0] == 401


def test_member_keys_cannot_configure(api: Api) -> None:
    with api.client(api.team.key("member", "shane.warne")) as member:
        assert member.post("/v1/ext/procedure/lead/process", json={}).status_code == 201
        r = member.post("/v1/admin/users", json={"username": "x"})
    assert r.status_code == 403


def test_unknown_procedure_is_404(api: Api) -> None:
    r = api.http.post("/v1/ext/procedure/nope/process", json={})
    assert r.status_code == 404 and r.json()["_data"] is None


def test_duplicate_primary_key_is_409(api: Api) -> None:
    assert (
        api.http.post("/v1/ext/procedure/lead/process", json={"data": {"lead_id": "X-1"}}).status_code == 201
    )
    r = api.http.post("/v1/ext/procedure/lead/process", json={"data": {"lead_id": "X-1"}})
    assert r.status_code == 409 and r.json()["_errors"][0]["field"] == "data.lead_id"


def test_rule_breaking_values_are_422_with_a_field_each(api: Api) -> None:
    r = api.http.post(
        "/v1/ext/procedure/lead/process",
        json={
            "data": {"nope": 1, "score": "x"},
            "state": "FLYING",
            "assignedTo": "ghost",
            "status": "DONE",
            "nextActionAt": "soon",
            "surprise": True,
        },
    )
    assert r.status_code == 422
    fields = {e.get("field") for e in r.json()["_errors"]}
    assert "surprise" in fields  # a field the API does not know is told first
    r = api.http.post(
        "/v1/ext/procedure/lead/process",
        json={
            "data": {"nope": 1, "score": "x"},
            "state": "FLYING",
            "assignedTo": "ghost",
            "status": "DONE",
            "nextActionAt": "soon",
        },
    )
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["_errors"]} == {  # an invalid status hides none of the others
        "status",
        "data.nope",
        "data.score",
        "state",
        "assignedTo",
        "nextActionAt",
    }


def test_body_over_the_limit_is_413(api: Api) -> None:
    big = {"data": {"source": "x" * (1024 * 1024 + 10)}}
    r = api.http.post("/v1/ext/procedure/lead/process", json=big)
    assert r.status_code == 413


def test_photo_upload_with_and_without_client_id_then_use_and_download(api: Api) -> None:
    r = api.http.post(
        "/v1/ext/photo",
        files={"photo": ("a.png", b"\x89PNG...", "image/png")},
        data={"filename": "site.png", "filetype": "image/png"},
    )
    assert r.status_code == 201, r.text
    photo = r.json()["_data"]
    client_id = "0b0e1c7e-8f55-4a5c-9a3c-7e3c1f0b9d11"
    r = api.http.post(
        f"/v1/ext/photo/{client_id}", files={"photo": ("b.pdf", b"%PDF-1.4", "application/pdf")}
    )
    assert r.status_code == 201 and r.json()["_data"]["id"] == client_id
    assert api.http.post(f"/v1/ext/photo/{client_id}", files={"photo": ("b.pdf", b"x")}).status_code == 409
    r = api.http.post(
        "/v1/ext/procedure/fieldvisit/process", json={"data": {"photos": [photo["id"]], "report": client_id}}
    )
    assert r.status_code == 201 and r.json()["_data"]["data"]["photos"] == [photo["id"]]
    r = api.http.post("/v1/ext/procedure/fieldvisit/process", json={"data": {"report": "missing"}})
    assert r.status_code == 422
    r = api.http.get(f"/v1/ext/photo/{photo['id']}")
    assert r.status_code == 200 and r.content == b"\x89PNG..." and r.headers["content-type"] == "image/png"


def test_config_lists_procedures_attributes_and_users(api: Api) -> None:
    r = api.http.get("/v1/ext/config")
    assert r.status_code == 200
    cfg = r.json()["_data"]
    lead = next(p for p in cfg["procedures"] if p["shortId"] == "lead")
    assert [s["shortId"] for s in lead["states"]] == ["NEW", "IN_PROGRESS", "CONVERTED", "LOST"]
    assert lead["primaryKey"] == "lead_id"
    assert {"shane.warne", "rahul.dravid"} <= {u["username"] for u in cfg["users"]}
    assert any(a["shortId"] == "full_name" for a in cfg["derivedAttributes"])
    assert "externalObject" in cfg["attributeTypes"]


def test_openapi_describes_the_routes(api: Api) -> None:
    doc = api.http.get("/openapi.json").json()
    create = doc["paths"]["/v1/ext/procedure/{procedureShortId}/process"]["post"]
    assert {"201", "400", "401", "404", "409", "413", "422"} <= set(create["responses"])
    assert json.dumps(doc).count("Idempotency-Key") >= 1
