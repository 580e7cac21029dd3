"""Indexed attributes and text search over HTTP, on a real server and its worker: an attribute marked
indexed through the admin API becomes ready without anyone running anything, and lists use it; ``q`` finds
processes by the words of their text values and of their record's."""

from __future__ import annotations

import time
from typing import Any

from tests.e2e.conftest import Api

LEADS = "/v1/ext/procedure/lead/process"


def mark(api: Api, indexed: set[str]) -> dict[str, Any]:
    """PUT ``lead`` as it is, with exactly ``indexed`` marked: the saved definition."""
    lead = api.http.get("/v1/admin/procedures/lead").json()["_data"]
    keys = ("shortId", "label", "attributes", "primaryKey", "states", "initialState", "transitions", "entity")
    body = {k: lead[k] for k in keys if lead.get(k) is not None}
    body["states"] = [{k: v for k, v in s.items() if k in ("id", "shortId", "label")} for s in lead["states"]]
    body["attributes"] = [a | {"indexed": a["shortId"] in indexed} for a in lead["attributes"]]
    r = api.http.put(f"/v1/admin/procedures/{lead['id']}", json=body)
    assert r.status_code == 200, r.text
    return dict(r.json()["_data"])


def ids(api: Api, body: dict[str, Any]) -> set[str]:
    r = api.http.post(f"{LEADS}/list", json={"limit": 100, **body})
    assert r.status_code == 200, r.text
    return {p["id"] for p in r.json()["_data"]}


def test_an_attribute_marked_indexed_is_built_by_the_workers_and_ready(api: Api) -> None:
    made = [
        api.http.post(LEADS, json={"data": {"city": city, "score": score}}).json()["_data"]["id"]
        for city, score in (("Pune", 3), ("Goa", 9), ("Pune", 7))
    ]
    saved = mark(api, {"score", "city"})
    assert set(saved["indexes"]) == {"score", "city"}
    assert {a["shortId"] for a in saved["attributes"] if a.get("indexed")} == {"score", "city"}
    deadline = time.monotonic() + 60
    while api.http.get("/v1/admin/procedures/lead").json()["_data"]["indexes"] != {
        "score": "ready",
        "city": "ready",
    }:
        assert time.monotonic() < deadline, "the indexes were not built"
        time.sleep(0.2)
    r = api.http.post(
        f"{LEADS}/list", json={"where": {"city": "Pune"}, "sort": [{"field": "score", "dir": "desc"}]}
    )
    assert [p["id"] for p in r.json()["_data"]] == [made[2], made[0]]
    assert mark(api, set())["indexes"] == {}


def test_q_finds_words_of_the_process_and_of_its_record(api: Api) -> None:
    ted = api.http.post(
        LEADS,
        json={
            "data": {"firstname": "Ted", "lastname": "Mosby"},
            "record": {"data": {"phone_number": "7701214822", "name": "Theodore Goliath"}},
        },
    ).json()["_data"]["id"]
    barney = api.http.post(LEADS, json={"data": {"firstname": "Barney", "city": "Mosby"}}).json()["_data"][
        "id"
    ]
    assert ids(api, {"q": "mosby"}) == {ted, barney}
    assert ids(api, {"q": "Ted MOSBY"}) == {ted}
    assert ids(api, {"q": "goliath"}) == {ted}  # the record's name
    assert ids(api, {"q": "mosby", "where": {"firstname": "Barney"}}) == {barney}
    r = api.http.post(f"{LEADS}/list", json={"q": "  ?! "})
    assert r.status_code == 422 and r.json()["_errors"][0]["field"] == "q"
