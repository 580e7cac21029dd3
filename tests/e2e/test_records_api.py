"""The records API over HTTP: list and search, read and update by id and by primary key, a record's
processes; the envelope, errors, another team's record a 404, every route in the OpenAPI document."""

from __future__ import annotations

from tests.conftest import make_team
from tests.e2e.conftest import Api

LEADS = "/v1/ext/procedure/lead/process"
RECORDS = "/v1/ext/entity/customer/record"


def lead(api: Api, lead_id: str, customer: dict) -> dict:
    r = api.http.post(LEADS, json={"data": {"lead_id": lead_id}, "record": {"data": customer}})
    assert r.status_code == 201, r.text
    return dict(r.json()["_data"])


def test_records_are_listed_read_updated_and_lead_to_their_processes(api: Api) -> None:
    first = lead(api, "LEAD-1", {"phone_number": "7701214822", "email": "test@example.com", "name": "Ann"})
    lead(api, "LEAD-2", {"phone_number": "7701214822"})
    lead(api, "LEAD-3", {"phone_number": "7701200000", "name": "Bob"})
    r = api.http.post(
        f"{RECORDS}/list",
        json={
            "where": {"or": [{"email": "test@example.com"}, {"name": "Bob"}]},
            "sort": [{"field": "name", "dir": "desc"}],
            "limit": 1,
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["data"]["name"] for x in body["_data"]] == ["Bob"] and body["_meta"]["hasMore"]
    r = api.http.post(
        f"{RECORDS}/list",
        json={
            "where": {"or": [{"email": "test@example.com"}, {"name": "Bob"}]},
            "sort": [{"field": "name", "dir": "desc"}],
            "limit": 1,
            "cursor": body["_meta"]["nextCursor"],
        },
    )
    assert [x["id"] for x in r.json()["_data"]] == [first["record"]] and not r.json()["_meta"]["hasMore"]

    r = api.http.get(f"{RECORDS}/phone_number/7701214822")
    assert r.status_code == 200 and r.json()["_data"]["id"] == first["record"], r.text
    assert api.http.get(f"{RECORDS}/{first['record']}").json()["_data"] == r.json()["_data"]
    r = api.http.put(f"{RECORDS}/phone_number/7701214822", json={"data": {"name": "Ann Lee"}})
    assert r.status_code == 200 and r.json()["_data"]["data"]["name"] == "Ann Lee", r.text
    r = api.http.put(f"{RECORDS}/{first['record']}", json={"data": {"phone_number": "7701200000"}})
    assert r.status_code == 409 and r.json()["_errors"][0]["code"] == "duplicate_primary_key", r.text
    r = api.http.put(f"{RECORDS}/{first['record']}", json={"data": {"email": "nope"}})
    assert r.status_code == 422 and r.json()["_errors"][0]["field"] == "data.email", r.text

    r = api.http.post(f"{RECORDS}/{first['record']}/process/list", json={"limit": 10})
    assert r.status_code == 200, r.text
    assert [p["data"]["lead_id"] for p in r.json()["_data"]] == ["LEAD-2", "LEAD-1"]
    # and from the process side: the record's attributes filter the process list
    r = api.http.post(
        f"{LEADS}/list", json={"where": {"record.name": "Ann Lee"}, "sort": [{"field": "lead_id"}]}
    )
    assert [p["data"]["lead_id"] for p in r.json()["_data"]] == ["LEAD-1", "LEAD-2"]


def test_errors_and_tenancy(api: Api) -> None:
    mine = lead(api, "LEAD-1", {"phone_number": "7701214822"})
    for method, path, body, status, code in (
        ("post", f"{RECORDS}/list", {"where": {"nope": 1}}, 422, "unknown_field"),
        ("post", f"{RECORDS}/list", {"where": {"email": {"~": 1}}}, 422, "unknown_operator"),
        ("post", f"{RECORDS}/list", {"cursor": "x.y"}, 400, "invalid_cursor"),
        ("post", "/v1/ext/entity/nope/record/list", {}, 404, "not_found"),
        ("get", f"{RECORDS}/nope", None, 404, "not_found"),
        ("get", f"{RECORDS}/name/Ann", None, 404, "not_found"),
        ("put", f"{RECORDS}/{mine['record']}", {"data": {"phone_number": None}}, 422, "required"),
    ):
        r = api.http.request(method, path, json=body)
        assert r.status_code == status, (path, r.text)
        assert r.json()["_data"] is None and r.json()["_errors"][0]["code"] == code, r.text
    stranger = make_team(api.team.services)
    with api.client(stranger.key()) as http:
        for method, path in (
            ("get", f"{RECORDS}/{mine['record']}"),
            ("put", f"{RECORDS}/{mine['record']}"),
            ("post", f"{RECORDS}/{mine['record']}/process/list"),
        ):
            r = http.request(method, path, json={"data": {"name": "x"}} if method == "put" else {})
            assert r.status_code == 404, r.text
        assert http.post(f"{RECORDS}/list", json={}).json()["_data"] == []
    assert api.http.get(f"{RECORDS}/{mine['record']}").json()["_data"]["data"] == {
        "phone_number": "7701214822"
    }


def test_the_records_api_is_documented(api: Api) -> None:
    paths = api.http.get("/openapi.json").json()["paths"]
    for path, methods in (
        (f"{RECORDS}/list".replace("customer", "{entityShortId}"), {"post"}),
        ("/v1/ext/entity/{entityShortId}/record/{recordId}", {"get", "put"}),
        ("/v1/ext/entity/{entityShortId}/record/{keyShortId}/{keyValue}", {"get", "put"}),
        ("/v1/ext/entity/{entityShortId}/record/{recordId}/process/list", {"post"}),
    ):
        assert methods <= set(paths[path]), (path, paths.get(path))
