"""Tenancy is structural: every route, called with another team's key and this team's ids, is a 404 (for
routes that name an id) or shows none of this team's data (for the rest)."""

from __future__ import annotations

import re
import uuid

from procession.services.templates import LEAD
from tests.e2e.conftest import Api


def test_every_route_hides_another_teams_ids(api: Api, server: str) -> None:
    a = api.http
    process = a.post(
        "/v1/ext/procedure/lead/process", json={"data": {"firstname": "Secret", "lead_id": "SECRET-1"}}
    ).json()["_data"]
    photo = a.post("/v1/ext/photo", files={"photo": ("s.png", b"secret", "image/png")}).json()["_data"]
    job = a.patch("/v1/ext/procedure/lead/process", json={"processes": [{"id": process["id"]}]}).json()[
        "_data"
    ]
    config = a.get("/v1/ext/config").json()["_data"]
    lead = next(p for p in config["procedures"] if p["shortId"] == "lead")
    customer = config["entities"][0]
    ids = {
        "processId": process["id"],
        "procedureShortId": "lead",
        "pkShortId": "lead_id",
        "pkValue": process["data"]["lead_id"],
        "procedureId": lead["id"],
        "entityId": customer["id"],
        "fileId": photo["id"],
        "jobId": job["id"],
        "clientUUID": str(uuid.uuid4()),
    }
    secrets = {process["id"], lead["id"], customer["id"], job["id"], "Secret"}
    bodies = {
        ("put", "/v1/admin/procedures/{procedureId}"): LEAD,
        ("put", "/v1/admin/entities/{entityId}"): {"shortId": "customer", "attributes": []},
        ("post", "/v1/admin/procedures"): {**LEAD, "shortId": "lead2"},
        ("post", "/v1/admin/entities"): {"shortId": "thing", "attributes": []},
        ("post", "/v1/admin/users"): {"username": "someone"},
        ("post", "/v1/admin/pods"): {"shortId": "pod2"},
    }
    other = api.client(None)
    from tests.conftest import make_team

    b = make_team(api.team.services)
    other.headers["Authorization"] = f"Bearer {b.key()}"
    walked = 0
    for path, methods in other.get("/openapi.json").json()["paths"].items():
        if path in ("/healthz",):
            continue
        params = re.findall(r"{(\w+)}", path)
        url = path.format(**ids)
        for method in methods:
            kwargs: dict = {}
            if "photo" in path and method == "post":
                kwargs["files"] = {"photo": ("x.png", b"x", "image/png")}
            elif method in ("post", "put"):
                kwargs["json"] = bodies.get((method, path), {})
            r = other.request(method.upper(), url, **kwargs)
            walked += 1
            names_an_id = any(p not in ("procedureShortId", "pkShortId", "clientUUID") for p in params)
            if names_an_id:
                assert r.status_code == 404, (method, path, r.status_code, r.text)
            else:
                assert r.status_code < 500, (method, path, r.text)
                assert not any(s in r.text for s in secrets), (method, path, r.text)
    assert walked >= 15
