"""How requests are read, over HTTP: any primary-key value reaches its process; a body of another media type
than the route reads is a 415; an empty body names no field; every error of a body is reported, each once;
a bulk entry's missing process is named by what it was looked for by; the upload's file is a binary one."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.e2e.conftest import Api
from tests.e2e.test_bulk_api import wait_for

LEADS = "/v1/ext/procedure/lead/process"

# values a route's path could mistake for something else: a sub-resource's name, slashes, reserved characters
KEYS = [
    "events",
    "requirements",
    "links",
    "a/b",
    "a/b/events",
    "/lead",
    "end/",
    "x y",
    "100%",
    "q?x=1",
    "h#1",
    "ü",
]


@pytest.mark.parametrize("encode", [True, False])
def test_any_primary_key_value_is_read_updated_and_deleted_by_it(api: Api, encode: bool) -> None:
    for value in KEYS:
        made = api.http.post(LEADS, json={"data": {"lead_id": value}})
        assert made.status_code == 201, (value, made.text)
        sent = quote(value, safe="" if encode else "/")
        path = f"{LEADS}/lead_id/{sent}"
        r = api.http.get(path)
        assert r.status_code == 200 and r.json()["_data"]["id"] == made.json()["_data"]["id"], value
        r = api.http.put(path, json={"data": {"city": "Pune"}})
        assert r.status_code == 200 and r.json()["_data"]["data"]["city"] == "Pune", value
        assert api.http.delete(path).status_code == 200, value
        assert api.http.get(path).status_code == 404, value
    # a process's sub-resources are still its own: an id is never taken for a key's shortId
    p = api.http.post(LEADS, json={}).json()["_data"]
    history = api.http.get(f"{LEADS}/{p['id']}/events").json()["_data"]
    assert history[0]["type"] == "process.created"
    assert "allowedStates" in api.http.get(f"{LEADS}/{p['id']}/requirements").json()["_data"]
    assert api.http.get(f"{LEADS}/{p['id']}/links").json()["_data"] == []


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", LEADS, b'{"data": {}}'),
        ("POST", f"{LEADS}/list", b"{}"),
        ("POST", f"{LEADS}/export", b"{}"),
        ("PATCH", LEADS, b'{"processes": [{"id": "x"}]}'),
        ("POST", "/v1/admin/users", b'{"username": "ann"}'),
    ],
)
def test_a_json_body_sent_as_another_media_type_is_a_415_naming_it(
    api: Api, method: str, path: str, body: bytes
) -> None:
    for sent in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"Content-Type": sent} if sent else {}
        r = api.http.request(method, path, content=body, headers=headers)
        assert r.status_code == 415, (sent, r.text)
        (error,) = r.json()["_errors"]
        assert error["code"] == "unsupported_media_type"
        assert (sent or "without a Content-Type") in error["message"] and "application/json" in error[
            "message"
        ]
    for sent in ("application/json", "application/json; charset=utf-8", "application/merge-patch+json"):
        r = api.http.request(method, path, content=body, headers={"Content-Type": sent})
        assert r.status_code not in (400, 415) and r.status_code < 500, (
            sent,
            r.text,
        )  # read: 409 is a repeat


def test_an_upload_must_be_multipart(api: Api) -> None:
    r = api.http.post("/v1/ext/photo", json={"photo": "aGVsbG8="})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["_errors"][0]["message"]
    assert api.http.post("/v1/ext/photo", files={"photo": ("a.txt", b"hello")}).status_code == 201


def test_an_empty_body_is_a_400_naming_no_field(api: Api) -> None:
    for path in (LEADS, f"{LEADS}/list", f"{LEADS}/export"):
        r = api.http.post(path, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, r.text
        assert r.json()["_errors"] == [
            {"code": "malformed_body", "message": "the body is empty: send a JSON object"}
        ]


def test_every_error_of_a_body_is_reported_each_once(api: Api) -> None:
    body = {"status": "NOPE", "state": "ZZZ", "data": {"score": "x"}, "nextActionAt": True}
    r = api.http.post(LEADS, json=body)
    assert r.status_code == 422
    fields = sorted(e["field"] for e in r.json()["_errors"])
    assert fields == ["data.score", "nextActionAt", "state", "status"]
    p = api.http.post(LEADS, json={}).json()["_data"]
    for value in (True, False, "soon", -1):
        r = api.http.put(f"{LEADS}/{p['id']}", json={"status": 3, "nextActionAt": value})
        assert r.status_code == 422
        assert sorted(e["field"] for e in r.json()["_errors"]) == ["nextActionAt", "status"], value
    assert api.http.get(f"{LEADS}/{p['id']}").json()["_data"]["nextActionAt"] is None
    r = api.http.post(LEADS, json={"record": {"data": {"email": "ada@example.com"}}})
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["_errors"]] == ["record.data.phone_number"]


def test_a_bulk_entry_names_the_process_it_did_not_find(api: Api) -> None:
    items = [
        {"id": "no-such-id", "data": {"city": "Pune"}},
        {"lead_id": "LEAD-404404", "data": {"city": "Pune"}},
    ]
    job = api.http.patch(LEADS, json={"processes": items}).json()["_data"]
    wait_for(api, job["id"])
    entries = api.http.get(f"/v1/ext/background-job/{job['id']}/entries").json()["_data"]
    (by_id,), (by_key,) = (e["errors"] for e in entries)
    assert by_id["field"] == "id" and "'no-such-id'" in by_id["message"]
    assert by_key["field"] == "lead_id" and "lead_id 'LEAD-404404'" in by_key["message"]


def test_the_upload_is_described_as_a_binary_file(api: Api) -> None:
    doc = api.http.get("/openapi.json").json()
    for path in ("/v1/ext/photo", "/v1/ext/photo/{fileId}"):
        content = doc["paths"][path]["post"]["requestBody"]["content"]
        (media,) = content
        ref = content[media]["schema"]["$ref"].rsplit("/", 1)[-1]
        photo = doc["components"]["schemas"][ref]["properties"]["photo"]
        assert (media, photo["type"], photo["format"]) == ("multipart/form-data", "string", "binary")
