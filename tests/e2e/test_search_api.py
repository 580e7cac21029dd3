"""The list API over HTTP: the vendor's own example, verbatim, against the demo team; a boolean filter in
every form answered (never a 500), the connection kept."""

from __future__ import annotations

from typing import Any

import httpx

from procession.bootstrap import Services
from procession.services.teams import create_key
from procession.services.templates import seed_demo
from procession.store import tables as t
from tests.e2e.conftest import Api

LEADS = "/v1/ext/procedure/lead/process"
# ../shared/spec/README.md, as the vendor wrote it
VENDOR_EXAMPLE = """{"where": {"status": "OPEN", "state": "NEW", "createdAt": {">": "2023-09-01T06:27:30+05:30",
  "<": "2023-09-10T06:27:30+05:30"}, "or": [{"email": "test@example.com"}, {"phone_number": "7701214822"}]},
  "skip": 0, "limit": 10}"""
IN_THE_WINDOW = 1693900000000  # 2023-09-05, between the example's two times


def connection(r: httpx.Response) -> Any:
    return r.extensions["network_stream"].get_extra_info("client_addr")


def test_the_vendors_list_example_runs_verbatim_against_the_demo_team(
    server: str, services: Services
) -> None:
    team = seed_demo(services.uows)
    key = services.run(create_key, team, role="admin", username="admin")
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {key}"}) as http:
        made = []
        for record in (
            {"phone_number": "7701214822"},
            {"phone_number": "7701299999", "email": "test@example.com"},
        ):
            r = http.post(LEADS, json={"record": {"data": record}, "data": {"city": "Pune"}})
            assert r.status_code == 201, r.text
            made.append(r.json()["_data"]["id"])
        r = http.post(LEADS, json={"data": {"city": "Pune"}})  # no customer: not found by the example
        made.append(r.json()["_data"]["id"])
        with services.engine.begin() as conn:  # made in the example's window
            conn.execute(
                t.processes.update().where(t.processes.c.id.in_(made)).values(created_at=IN_THE_WINDOW)
            )
        r = http.post(f"{LEADS}/list", content=VENDOR_EXAMPLE, headers={"Content-Type": "application/json"})
        assert r.status_code == 200, r.text
        found = {p["id"] for p in r.json()["_data"]}
        assert found == set(made[:2]), r.json()


BOOLEAN_FORMS: list[Any] = [
    True,
    False,
    "true",
    [True],
    [False, None],
    {"=": False},
    {"!=": True},
    {">": False},
    {">=": False, "<=": True},
    {"<": True},
    {"=": None},
]


def test_is_deleted_in_every_form_is_answered_and_the_connection_kept(api: Api) -> None:
    kept = []
    for i in range(3):
        r = api.http.post(LEADS, json={"data": {"score": i}})
        kept.append(r.json()["_data"]["id"])
    assert api.http.delete(f"{LEADS}/{kept[0]}").status_code == 200
    first = None
    for rhs in BOOLEAN_FORMS:
        body = {
            "where": {"isDeleted": rhs},
            "includeDeleted": True,
            "sort": [{"field": "isDeleted"}],
            "limit": 100,
        }
        r = api.http.post(f"{LEADS}/list", json=body)
        assert r.status_code == (422 if rhs == "true" else 200), (rhs, r.text)
        first = first or connection(r)
        assert connection(r) == first, "the server closed the connection"
    r = api.http.post(f"{LEADS}/list", json={"where": {"isDeleted": True}, "includeDeleted": True})
    assert [p["id"] for p in r.json()["_data"]] == [kept[0]]
    r = api.http.post(f"{LEADS}/list", json={"where": {"isDeleted": {"!=": True}}, "limit": 100})
    assert {p["id"] for p in r.json()["_data"]} == set(kept[1:])
