"""Export over HTTP: a multi-batch export is every process, once each, in the list's order; the format by the
body or the Accept header; errors before anything is streamed; tenancy as the list's."""

from __future__ import annotations

import csv
import io

import orjson

from procession.services.exports import BATCH, FIELDS
from tests.conftest import make_team
from tests.e2e.conftest import Api
from tests.e2e.test_bulk_api import wait_for

LEADS = "/v1/ext/procedure/lead/process"
COUNT = 2 * BATCH + 7  # three batches, the last one short


def test_a_multi_batch_export_has_every_process_once_in_order(api: Api) -> None:
    items = [{"data": {"firstname": f"f{i:05}", "city": "Pune" if i % 2 else "Agra"}} for i in range(COUNT)]
    job = api.http.post(f"{LEADS}/bulk-create", json={"processes": items}).json()["_data"]
    assert wait_for(api, job["id"])["_meta"]["counts"]["SUCCESS"] == COUNT
    sort = [{"field": "firstname", "dir": "desc"}]

    r = api.http.post(f"{LEADS}/export", json={"sort": sort, "format": "ndjson"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
    exported = [orjson.loads(line) for line in r.content.splitlines()]
    assert [p["data"]["firstname"] for p in exported] == [f"f{i:05}" for i in reversed(range(COUNT))]
    assert len({p["id"] for p in exported}) == COUNT
    first_page = api.http.post(f"{LEADS}/list", json={"sort": sort, "limit": 3}).json()["_data"]
    assert exported[:3] == first_page  # each line is the process as the list shows it

    r = api.http.post(f"{LEADS}/export", json={"where": {"city": "Pune"}}, headers={"Accept": "text/csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"] == 'attachment; filename="lead.csv"'
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == COUNT // 2 and {row["data.city"] for row in rows} == {"Pune"}
    assert list(rows[0])[: len(FIELDS)] == FIELDS
    updated = [int(row["updatedAt"]) for row in rows]
    assert updated == sorted(updated, reverse=True)  # the list's default order: updatedAt descending


def test_the_format_follows_the_body_then_the_accept_header(api: Api) -> None:
    api.http.post(LEADS, json={"data": {"firstname": "Ada"}})
    cases = [
        ({}, None, "text/csv"),
        ({}, "application/x-ndjson", "application/x-ndjson"),
        ({}, "application/json;q=0.5, text/csv;q=0.4, application/x-ndjson;q=0.9", "application/x-ndjson"),
        ({}, "application/xml", "text/csv"),
        ({"format": "csv"}, "application/x-ndjson", "text/csv"),
        ({"format": "ndjson"}, "text/csv", "application/x-ndjson"),
    ]
    for body, accept, expected in cases:
        headers = {"Accept": accept} if accept else {}
        r = api.http.post(f"{LEADS}/export", json=body, headers=headers)
        assert r.status_code == 200 and r.headers["content-type"].split(";")[0] == expected, (body, accept)


def test_errors_come_before_the_stream_and_tenancy_holds(api: Api) -> None:
    r = api.http.post(f"{LEADS}/export", json={"where": {"colour": "red"}})
    assert r.status_code == 422 and r.json()["_errors"][0]["field"] == "where.colour"
    r = api.http.post(f"{LEADS}/export", json={"format": "xlsx"})
    assert r.status_code == 422 and r.json()["_errors"][0]["field"] == "format"
    assert api.client(None).post(f"{LEADS}/export", json={}).status_code == 401
    mine = api.http.post(LEADS, json={"data": {"firstname": "Mine"}}).json()["_data"]["id"]
    with api.client(make_team(api.team.services).key()) as them:
        r = them.post(f"{LEADS}/export", json={"format": "ndjson"})
        assert r.status_code == 200 and mine.encode() not in r.content
