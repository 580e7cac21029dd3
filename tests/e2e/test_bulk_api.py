"""Bulk update and bulk create over HTTP, applied in the background by the real engine (the embedded runner
on SQLite, a procrastinate worker process on PostgreSQL)."""

from __future__ import annotations

import time
from typing import Any

import orjson
import sqlalchemy as sa

from procession.store import tables as t
from tests.e2e.conftest import Api

LEADS = "/v1/ext/procedure/lead/process"


def wait_for(api: Api, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.http.get(f"/v1/ext/background-job/{job_id}").json()
        if job["_data"]["status"] in ("COMPLETED", "FAILED", "ABORTED"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def nested(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


def applied(api: Api, items: list[dict]) -> tuple[dict, list[dict]]:
    """A bulk update of ``items``, accepted and run to its end: the job and its INVALID entries."""
    r = api.http.patch(LEADS, json={"processes": items})
    assert r.status_code == 202, r.text
    job = wait_for(api, r.json()["_data"]["id"])
    invalid = api.http.get(
        f"/v1/ext/background-job/{job['_data']['id']}/entries", params={"status": "INVALID"}
    ).json()["_data"]
    return job, invalid


def create(api: Api, **body) -> dict:
    r = api.http.post(LEADS, json=body)
    assert r.status_code == 201, r.text
    return r.json()["_data"]


def test_the_specification_examples(api: Api) -> None:
    first = create(api, data={"first_name": "Cixin"})
    tokyo = create(api, data={"lead_id": "LEAD-910"})
    ext = create(api, data={"lead_id": "EXT-TEST-143"})
    goa = create(api)
    bodies = [
        {
            "processes": [
                {
                    "id": first["id"],
                    "state": "IN_PROGRESS",
                    "status": "OPEN",
                    "assignedTo": "shane.warne",
                    "nextActionAt": "1616253910842",
                    "data": {"first_name": "shane", "last_name": "warne"},
                }
            ]
        },
        {"processes": [{"lead_id": "LEAD-910", "data": {"country": "Japan", "city": "Tokyo"}}]},
        {"processes": [{"status": "COMPLETED"}]},
        {
            "processes": [
                {"lead_id": "EXT-TEST-143", "update": {"data": {"score": "105"}}},
                {"id": goa["id"], "update": {"data": {"city": "Goa"}, "state": "IN_PROGRESS"}},
            ]
        },
    ]
    jobs = []
    for body in bodies:
        r = api.http.patch(LEADS, json=body)
        assert r.status_code == 202, r.text
        assert set(r.json()["_meta"]["counts"]) == {"INVALID", "NOT_STARTED", "SUCCESS", "ERROR"}
        jobs.append(wait_for(api, r.json()["_data"]["id"]))
    assert [j["_meta"]["counts"]["SUCCESS"] for j in jobs] == [1, 1, 0, 2]
    assert jobs[2]["_meta"]["counts"]["INVALID"] == 1
    got = {
        p["id"]: p
        for p in (api.http.get(f"{LEADS}/{x['id']}").json()["_data"] for x in (first, tokyo, ext, goa))
    }
    assert got[first["id"]]["data"]["last_name"] == "warne" and got[first["id"]]["state"] == "IN_PROGRESS"
    assert got[first["id"]]["nextActionAt"] == 1616253910842
    assert got[tokyo["id"]]["data"]["city"] == "Tokyo" and got[tokyo["id"]]["data"]["country"] == "Japan"
    assert got[ext["id"]]["data"]["score"] == 105
    assert got[goa["id"]]["data"]["city"] == "Goa" and got[goa["id"]]["state"] == "IN_PROGRESS"
    entries = api.http.get(f"/v1/ext/background-job/{jobs[2]['_data']['id']}/entries?status=INVALID").json()
    assert entries["_data"][0]["item"] == {"status": "COMPLETED"}
    assert entries["_data"][0]["errors"][0]["code"] == "missing_identifier"


def jobs(api: Api) -> int:
    """The team's jobs."""
    with api.team.uow() as uow:
        count = sa.select(sa.func.count()).select_from(t.jobs).where(t.jobs.c.team_id == api.team.id)
        return int(uow.conn.scalar(count))


def test_structurally_broken_requests_create_no_job(api: Api) -> None:
    before = jobs(api)
    raw = {"Content-Type": "application/json"}
    assert api.http.patch(LEADS, content=b"{", headers=raw).status_code == 400
    # broken after the first batches were read and stored: all of it is undone
    cut = orjson.dumps({"processes": [{"lead_id": f"LEAD-{i}"} for i in range(12_000)]})[:-40]
    r = api.http.patch(LEADS, content=cut, headers=raw)
    assert (r.status_code, r.json()["_errors"][0]["code"]) == (400, "malformed_json")
    deep = api.http.patch(LEADS, content=b'{"processes": ' + b"[" * 50_000, headers=raw)
    assert (deep.status_code, deep.json()["_errors"][0]["code"]) == (400, "too_deep")
    # one item of many nests 66 levels deep in the body (64 allowed), after others were stored
    items = [{"lead_id": f"LEAD-{i}"} for i in range(12_000)]
    items[-1]["data"] = {"score": nested(62)}
    too_deep = api.http.patch(LEADS, json={"processes": items})
    assert (too_deep.status_code, too_deep.json()["_errors"][0]["code"]) == (400, "too_deep")
    deeper = (
        b'{"processes": [{"data": {"score": ' + b"[" * 900 + b"]" * 900 + b"}}]}"
    )  # near the stack's limit
    assert api.http.patch(LEADS, content=deeper, headers=raw).json()["_errors"][0]["code"] == "too_deep"
    huge = api.http.patch(
        LEADS, content=b'{"processes": [{"lead_id": "L", "data": {"score": 1e999}}]}', headers=raw
    )
    assert (huge.status_code, huge.json()["_errors"][0]["code"]) == (400, "malformed_json")
    assert api.http.patch(LEADS, json={"items": []}).status_code == 422
    assert api.http.patch(LEADS, json={"processes": []}).status_code == 422
    assert api.http.patch(LEADS, json={"processes": "x"}).status_code == 422
    assert api.http.patch("/v1/ext/procedure/nope/process", json={"processes": [{}]}).status_code == 404
    assert jobs(api) == before


def test_the_nul_character_is_refused_alike_on_both_databases(api: Api) -> None:
    """PostgreSQL stores no text holding the NUL character (\\u0000), so neither database takes it: in a value,
    a 422 for a create and an INVALID entry in a bulk job, whose other entries go on; anywhere else in a bulk
    item, an INVALID entry too, the item kept with U+FFFD in its place. Never a 500; nothing half-written."""
    before = jobs(api)
    single = api.http.post(LEADS, json={"data": {"city": "a\u0000b"}})
    assert (single.status_code, single.json()["_errors"][0]["field"]) == (422, "data.city")
    assert "\\u0000" in single.json()["_errors"][0]["message"]
    p = create(api)
    lookup = api.http.put(f"{LEADS}/{p['id']}", json={"assignedTo": "a\u0000b"})  # a lookup, no value
    assert lookup.status_code == 422 and jobs(api) == before

    items = [
        {"id": p["id"], "data": {"city": "a\u0000b"}},
        {"id": p["id"], "data": {"score": 1}, "note\u0000": "x"},
        {"id": "a\u0000b", "data": {"score": 2}},
        {"id": p["id"], "data": {"score": 3}},
    ]
    job, invalid = applied(api, items)
    assert job["_meta"]["counts"] == {"INVALID": 3, "NOT_STARTED": 0, "SUCCESS": 1, "ERROR": 0}
    assert [(e["errors"][0]["code"], e["errors"][0]["field"]) for e in invalid] == [
        ("invalid_value", "data.city"),
        ("unknown_field", "note\ufffd"),
        ("invalid_character", "id"),
    ]
    assert [e["item"] for e in invalid] == [
        {"id": p["id"], "data": {"city": "a\ufffdb"}},
        {"id": p["id"], "data": {"score": 1}, "note\ufffd": "x"},
        {"id": "a\ufffdb", "data": {"score": 2}},
    ]
    assert api.http.get(f"{LEADS}/{p['id']}").json()["_data"]["data"]["score"] == 3


def test_what_json_allows_but_an_attribute_does_not_is_the_entry_error(api: Api) -> None:
    p = create(api)
    items = [
        {"id": p["id"], "data": {"score": 10**30}},  # past 64 bits: read as a float, out of range
        {"id": p["id"], "data": {"score": nested(60)}},  # 64 levels deep in the body: the most allowed
        {"id": p["id"], "data": {"score": 7}},
    ]
    job, invalid = applied(api, items)
    assert job["_meta"]["counts"] == {"INVALID": 2, "NOT_STARTED": 0, "SUCCESS": 1, "ERROR": 0}
    assert [(e["index"], e["errors"][0]["field"]) for e in invalid] == [(0, "data.score"), (1, "data.score")]
    assert invalid[1]["item"] == items[1]


def test_idempotent_submission_returns_the_same_job(api: Api) -> None:
    p = create(api)
    body = {"processes": [{"id": p["id"], "data": {"score": 1}}]}
    first = api.http.patch(LEADS, json=body, headers={"Idempotency-Key": "k1"})
    again = api.http.patch(LEADS, json=body, headers={"Idempotency-Key": "k1"})
    other = api.http.patch(LEADS, json={"processes": [{"id": p["id"]}]}, headers={"Idempotency-Key": "k1"})
    assert first.json()["_data"]["id"] == again.json()["_data"]["id"] and other.status_code == 409


def test_bulk_create_and_entry_paging(api: Api) -> None:
    items = [{"data": {"score": i}} for i in range(250)] + [{"data": {"score": "bad"}}]
    r = api.http.post(f"{LEADS}/bulk-create", json={"processes": items})
    assert r.status_code == 202
    job = wait_for(api, r.json()["_data"]["id"])
    assert job["_meta"]["counts"] == {"INVALID": 1, "NOT_STARTED": 0, "SUCCESS": 250, "ERROR": 0}
    seen, after = [], -1
    while True:
        page = api.http.get(
            f"/v1/ext/background-job/{job['_data']['id']}/entries",
            params={"status": "SUCCESS", "after": after, "limit": 100},
        ).json()
        seen += [e["processId"] for e in page["_data"]]
        if not page["_meta"]["hasMore"]:
            break
        after = page["_meta"]["nextAfter"]
    assert len(set(seen)) == 250
    listed = api.http.post(f"{LEADS}/list", json={"where": {"score": {">=": 0}}, "limit": 100}).json()
    assert listed["_meta"]["hasMore"] is True


def test_abort_over_http(api: Api) -> None:
    p = create(api)
    r = api.http.patch(
        LEADS, json={"processes": [{"id": p["id"], "data": {"score": i}} for i in range(10_000)]}
    )
    job_id = r.json()["_data"]["id"]
    aborted = api.http.post(f"/v1/ext/background-job/{job_id}/abort").json()
    final = wait_for(api, job_id)
    assert final["_data"]["status"] in (
        "ABORTED",
        "COMPLETED",
    )  # it may have finished before the abort landed
    if aborted["_data"]["status"] == "ABORTED":
        assert final["_data"]["status"] == "ABORTED"
        counts = final["_meta"]["counts"]
        assert counts["SUCCESS"] + counts["NOT_STARTED"] == 10_000 and counts["SUCCESS"] % 1000 == 0
