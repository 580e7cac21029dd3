"""Read, update, delete, list/search and history over HTTP, by id and by primary key."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Api

LEADS = "/v1/ext/procedure/lead/process"


def create(api: Api, **body) -> dict:
    r = api.http.post(LEADS, json=body)
    assert r.status_code == 201, r.text
    return r.json()["_data"]


@pytest.mark.parametrize("by_pk", [False, True])
def test_read_update_delete_restore_by_id_and_primary_key(api: Api, by_pk: bool) -> None:
    p = create(api, data={"firstname": "Ada", "city": "Pune"})
    path = f"{LEADS}/lead_id/{p['data']['lead_id']}" if by_pk else f"{LEADS}/{p['id']}"
    assert api.http.get(path).json()["_data"]["id"] == p["id"]
    r = api.http.put(
        path,
        json={
            "data": {"score": "42", "city": None},
            "state": "IN_PROGRESS",
            "assignedTo": "shane.warne",
            "nextActionAt": "1616253910842",
        },
    )
    assert r.status_code == 200, r.text
    q = r.json()["_data"]
    assert q["data"] == {"firstname": "Ada", "score": 42, "lead_id": p["data"]["lead_id"]}
    assert (q["state"], q["nextActionAt"], q["version"]) == ("IN_PROGRESS", 1616253910842, 2)
    assert api.http.delete(path).status_code == 200
    assert api.http.get(path).status_code == 404
    assert api.http.put(path, json={"data": {"score": 1}}).status_code == 404
    r = api.http.put(path, json={"isDeleted": False})
    assert r.status_code == 200 and r.json()["_data"]["isDeleted"] is False
    assert api.http.get(path).status_code == 200


def test_state_must_follow_the_graph(api: Api) -> None:
    p = create(api, state="CONVERTED")
    r = api.http.put(f"{LEADS}/{p['id']}", json={"state": "NEW"})
    assert r.status_code == 422
    assert "CONVERTED" in r.json()["_errors"][0]["message"] and "NEW" in r.json()["_errors"][0]["message"]


def test_unknown_and_read_only_fields_are_422(api: Api) -> None:
    p = create(api)
    for body in ({"createdAt": 1}, {"id": "x"}, {"firstAssignedAt": 1}, {"colour": "red"}):
        r = api.http.put(f"{LEADS}/{p['id']}", json=body)
        assert r.status_code == 422 and r.json()["_errors"][0]["code"] == "unknown_field", body


def test_stale_version_is_409(api: Api) -> None:
    p = create(api)
    assert (
        api.http.put(f"{LEADS}/{p['id']}", json={"data": {"score": 1}}, headers={"If-Match": "1"}).status_code
        == 200
    )
    r = api.http.put(f"{LEADS}/{p['id']}", json={"data": {"score": 2}}, headers={"If-Match": "1"})
    assert r.status_code == 409 and r.json()["_errors"][0]["code"] == "stale_version"
    assert api.http.put(f"{LEADS}/{p['id']}", json={"data": {"score": 2}, "version": 2}).status_code == 200


def test_list_filters_sorts_and_pages(api: Api) -> None:
    for i in range(25):
        create(
            api,
            data={"score": i, "city": "Goa" if i % 2 else "Pune"},
            state="IN_PROGRESS" if i < 10 else "NEW",
        )
    r = api.http.post(
        f"{LEADS}/list",
        json={
            "where": {"state": "IN_PROGRESS", "score": {">=": 5}},
            "sort": [{"field": "score", "dir": "desc"}],
            "limit": 3,
        },
    )
    body = r.json()
    assert [p["data"]["score"] for p in body["_data"]] == [9, 8, 7] and body["_meta"]["hasMore"] is True
    r = api.http.post(
        f"{LEADS}/list",
        json={
            "where": {"or": [{"score": [1, 2]}, {"city": "Pune", "score": {"<": 4}}]},
            "sort": [{"field": "score"}],
            "limit": 100,
        },
    )
    assert [p["data"]["score"] for p in r.json()["_data"]] == [0, 1, 2]
    seen, cursor = [], None
    while True:
        r = api.http.post(f"{LEADS}/list", json={"limit": 7, "cursor": cursor})
        seen += [p["id"] for p in r.json()["_data"]]
        cursor = r.json()["_meta"]["nextCursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 25


def test_malformed_where_points_at_the_clause(api: Api) -> None:
    r = api.http.post(f"{LEADS}/list", json={"where": {"or": [{"score": {"~": 1}}]}})
    assert r.status_code == 422 and r.json()["_errors"][0]["field"] == "where.or[0].score"
    r = api.http.post(f"{LEADS}/list", json={"where": {"nope": 1}})
    assert r.status_code == 422 and r.json()["_errors"][0]["field"] == "where.nope"
    assert api.http.post(f"{LEADS}/list", json={"limit": 101}).status_code == 422


def test_history_tells_who_when_and_what_changed(api: Api) -> None:
    p = create(api, data={"city": "Pune"})
    api.http.put(f"{LEADS}/{p['id']}", json={"data": {"city": "Goa"}, "state": "IN_PROGRESS"})
    events = api.http.get(f"{LEADS}/{p['id']}/events").json()["_data"]
    assert [e["type"] for e in events] == ["process.created", "process.updated", "process.state_changed"]
    assert events[1]["changes"]["data.city"] == {"old": "Pune", "new": "Goa"}
    assert events[1]["changes"]["state"] == {"old": "NEW", "new": "IN_PROGRESS"}
    assert events[1]["actorUsername"] == "admin"


def test_internal_api_speaks_ids(api: Api) -> None:
    p = create(api, data={"city": "Pune"})
    r = api.http.get(f"/v1/internal/process/{p['id']}")
    internal = r.json()["_data"]
    assert "city" not in internal["data"] and "Pune" in internal["data"].values()
    assert internal["state"] != "NEW"
