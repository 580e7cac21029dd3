"""Tenancy, route by route: every operation of the OpenAPI document, read from the server at test time (a new
route is walked without editing this test), called with another team's key and the first team's real ids in
its path gets a 404 and no data; the same call with the first team's key does not (so the ids are real).
Walked twice: with the first team's own procedure (every lookup fails at the procedure), and with the
templates' ``lead``, which both teams have (the lookups of what is inside it: processes, automations, runs;
a route whose path names only what both teams have by the same name is then the caller's own, and left
out). The routes that name only the caller's own things (no id in the path, or only names both teams
have), called by the other team, given the first team's ids where a query parameter takes one, show none of
them. A path parameter this test has no id for, or a request body it has no example of, fails it: a new
route makes it grow."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from pydantic import BaseModel

from procession.services.commands import AttributeInput, EntityInput, ProcedureInput, StateInput
from tests.conftest import make_team
from tests.e2e.conftest import Api

METHODS = {"get": 0, "post": 1, "put": 1, "patch": 1, "delete": 2}  # the order walked: deletes last
# routes that create at an id the client chooses (the path parameter): another team's id is a free id there
# (answered as any free id is), and what the first team has under it stays as it was
CREATES_AT_ID = {("post", "/v1/ext/photo/{fileId}"): "fileId"}
# query parameters of reads without ids in their path that take an id, and the path parameter it is
QUERY_IDS = {"process": "processId", "automation": "automationId", "job": "jobId"}
A_FILE = b"the first team's file"


@dataclass
class Mine:
    """The first team's things: ids by path parameter name (``shared``: those that name what every team has by
    that name), and a request body by request schema."""

    ids: dict[str, str | int]
    shared: set[str]
    bodies: dict[str, Any]


def created(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code in (201, 202), r.text
    return r.json()["_data"]


def definition(reply: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """A procedure's or entity's definition as read, as the body that saves it again unchanged."""
    body = {k: v for k, v in reply.items() if k in model.model_fields and k != "version"}
    body["attributes"] = [
        {k: v for k, v in a.items() if k in AttributeInput.model_fields} for a in body["attributes"]
    ]
    if "states" in body:
        body["states"] = [
            {k: v for k, v in s.items() if k in StateInput.model_fields} for s in body["states"]
        ]
    return body


def made(api: Api, *, in_lead: bool) -> Mine:
    """One of each thing a path can name, made by the first team through the API: in a procedure of its own,
    or in the templates' ``lead``, which every team has."""
    http, tag = api.http, uuid.uuid4().hex[:8]
    if in_lead:
        procedure = http.get("/v1/admin/procedures/lead").json()["_data"]
    else:
        procedure = created(
            http.post(
                "/v1/admin/procedures",
                json={
                    "shortId": f"only_{tag}",
                    "attributes": [{"shortId": "code", "type": "string"}],
                    "primaryKey": "code",
                    "states": [{"shortId": "NEW"}],
                },
            )
        )
    short, key = procedure["shortId"], procedure["primaryKey"]
    entity = created(
        http.post(
            "/v1/admin/entities",
            json={
                "shortId": f"thing_{tag}",
                "attributes": [{"shortId": "name", "type": "string"}],
                "primaryKey": "name",
            },
        )
    )
    webhook_body = {"url": "http://127.0.0.1:9/hook", "eventTypes": ["process.created"]}
    webhook = created(http.post("/v1/admin/webhooks", json=webhook_body))  # nothing listens there
    processes = f"/v1/ext/procedure/{short}/process"
    process = created(http.post(processes, json={"data": {} if in_lead else {key: "one"}}))
    (delivery,) = http.get(f"/v1/admin/webhooks/{webhook['id']}/deliveries").json()["_data"]
    by_key = created(
        http.post(processes, json={"data": {} if in_lead else {key: "two"}})
    )  # lead makes its key
    automation_body = {
        "name": "hold",
        "trigger": {"type": "manual"},
        "steps": [{"name": "pause", "type": "wait", "seconds": 3600}],
    }
    automation = created(
        http.post(f"/v1/admin/procedures/{procedure['id']}/automations", json=automation_body)
    )
    run = created(http.post(f"{processes}/{process['id']}/automations/{automation['id']}/run"))
    job = created(http.post(f"{processes}/bulk-create", json={"processes": [{"data": {}}]}))
    upload = created(http.post("/v1/ext/photo", files={"photo": ("a.txt", A_FILE, "text/plain")}))
    connector_body = {"name": f"crm_{tag}", "kind": "http", "baseUrl": "https://crm.example.com",
                      "credentials": {"auth": "Bearer first-team"}}  # fmt: skip
    connector = created(http.post("/v1/admin/connectors", json=connector_body))
    phone = str(int(tag, 16) % 10**10).rjust(10, "7")
    customer = {"record": {"data": {"phone_number": phone}}}
    record = created(http.post("/v1/ext/procedure/lead/process", json=customer))["record"]
    ids: dict[str, str | int] = {
        "procedureShortId": short,
        "procedureId": short if in_lead else procedure["id"],
        "processId": process["id"],
        "pkShortId": key,
        "pkValue": by_key["data"][key],
        "entityId": entity["id"],
        "automationId": automation["id"],
        "runId": run["id"],
        "jobId": job["id"],
        "fileId": upload["id"],
        "connectorId": connector["id"],
        "webhookId": webhook["id"],
        "deliveryId": delivery["id"],
        "entityShortId": "customer",
        "recordId": record,
        "keyShortId": "phone_number",
        "keyValue": phone,
    }
    bodies = {
        "CreateProcess": {"data": {}},
        "UpdateProcess": {},
        "ListProcesses": {},
        "ExportProcesses": {},
        "BulkProcesses": {"processes": [{"data": {}}]},
        "ProcedureInput": definition(procedure, ProcedureInput),  # saved again as it is
        "EntityInput": definition(entity, EntityInput),
        "AutomationInput": automation_body,
        "BatchInput": {"ids": [process["id"]]},
        "RunAgain": {},
        "UserInput": {"username": f"someone.{tag}"},
        "PodInput": {"shortId": f"pod_{tag}"},
        "ConnectorInput": connector_body,
        "WebhookInput": webhook_body,
        "WebhookUpdate": {},
        "ReplayFailed": {},
        "ListRecords": {},
        "RecordProcesses": {},
        "UpdateRecord": {"data": {}},
    }
    every = {"entityShortId", "keyShortId"}  # every team has the customer entity
    return Mine(ids, every | ({"procedureShortId", "procedureId", "pkShortId"} if in_lead else set()), bodies)


def schema_name(schema: dict[str, Any]) -> str:
    """The name of a request body's schema (``$ref``, possibly optional, or an inline one's title)."""
    for option in [schema, *schema.get("anyOf", [])]:
        if "$ref" in option:
            return str(option["$ref"]).rsplit("/", 1)[-1]
    return str(schema.get("title"))


def call(
    client: httpx.Client, method: str, path: str, operation: dict[str, Any], mine: Mine
) -> httpx.Response:
    """``operation`` sent by ``client`` with the first team's ids in its path and in the query parameters that
    take one, and a valid body."""
    url, query = path, {}
    for parameter in operation.get("parameters", []):
        name = parameter["name"]
        if parameter["in"] == "query" and name in QUERY_IDS:
            query[name] = mine.ids[QUERY_IDS[name]]
        if parameter["in"] != "path":
            continue
        if name not in mine.ids:
            pytest.fail(f"{method.upper()} {path}: no id for the path parameter {name!r}: make one in made()")
        url = url.replace(f"{{{name}}}", quote(str(mine.ids[name]), safe=""))
    content = operation.get("requestBody", {}).get("content", {})
    if "multipart/form-data" in content:
        sent = {"photo": ("b.txt", b"another team's file", "text/plain")}
        return client.request(method, url, params=query, files=sent)
    if "application/json" in content:
        name = schema_name(content["application/json"]["schema"])
        if name not in mine.bodies:
            pytest.fail(
                f"{method.upper()} {path}: no body for the request schema {name!r}: add one in made()"
            )
        return client.request(method, url, params=query, json=mine.bodies[name])
    return client.request(method, url, params=query)


def shown_ids(value: Any) -> set[Any]:
    """Every ``id`` in a reply, at any depth."""
    if isinstance(value, dict):
        return {v for k, v in value.items() if k == "id"} | {i for v in value.values() for i in shown_ids(v)}
    if isinstance(value, list):
        return {i for v in value for i in shown_ids(v)}
    return set()


def parameters(path: str) -> set[str]:
    return set(re.findall(r"\{(\w+)\}", path))


@pytest.mark.parametrize("in_lead", [False, True], ids=["own-procedure", "lead"])
def test_another_teams_ids_are_not_found_on_any_route(api: Api, in_lead: bool) -> None:
    mine = made(api, in_lead=in_lead)
    document = api.http.get("/openapi.json").json()
    operations = sorted(
        (
            (method, path, operation)
            for path, item in document["paths"].items()
            for method, operation in item.items()
        ),
        key=lambda o: METHODS[o[0]],
    )
    assert sum(1 for _, path, _ in operations if parameters(path)) >= 30, "the document lost its routes"
    # the routes that name something of the first team's, and those that name only what every team has
    walked = [o for o in operations if parameters(o[1]) - mine.shared]
    own = [o for o in operations if not parameters(o[1]) - mine.shared]
    with api.client(make_team(api.team.services).key()) as theirs:
        for method, path, operation in walked:
            not_found(theirs, method, path, operation, mine)
        for method, path, operation in walked:  # the ids are real: the first team's own calls find them
            r = call(api.http, method, path, operation, mine)
            assert r.status_code != 404 and r.status_code < 500, (
                f"{method.upper()} {path}: {r.status_code} {r.text}"
            )
        assert api.http.get(f"/v1/ext/photo/{mine.ids['fileId']}").content == A_FILE
        for method, path, operation in own:
            none_shown(theirs, method, path, operation, mine)


def not_found(theirs: httpx.Client, method: str, path: str, operation: dict[str, Any], mine: Mine) -> None:
    """Another team's call with the first team's ids: a 404 without data (where the client chooses the id, the
    answer a free id gets)."""
    r = call(theirs, method, path, operation, mine)
    name = CREATES_AT_ID.get((method, path))
    if name is not None:
        free = call(theirs, method, path, operation, replace(mine, ids=mine.ids | {name: str(uuid.uuid4())}))
        assert r.status_code == free.status_code < 500, f"{method.upper()} {path}: {r.text} / {free.text}"
        return
    assert r.status_code == 404, f"{method.upper()} {path} with another team's ids: {r.status_code} {r.text}"
    assert r.json()["_data"] is None, r.text


def none_shown(theirs: httpx.Client, method: str, path: str, operation: dict[str, Any], mine: Mine) -> None:
    """Another team's call that names only its own things (given the first team's ids where a query parameter
    takes one): none of the first team's ids, nor its own procedure's name, in the reply."""
    r = call(theirs, method, path, operation, mine)
    assert r.status_code < 500, f"{method.upper()} {path}: {r.status_code} {r.text}"
    alone = {k: v for k, v in mine.ids.items() if k not in mine.shared | {"pkShortId", "pkValue"}}
    numbers = {v for v in alone.values() if isinstance(v, int)}  # a run's id
    reply = r.json() if r.headers.get("content-type") == "application/json" else None
    shown = [v for v in alone.values() if isinstance(v, str) and v in r.text] + sorted(
        numbers & shown_ids(reply)
    )
    assert not shown, f"{method.upper()} {path} shows the first team's {shown}: {r.text}"
