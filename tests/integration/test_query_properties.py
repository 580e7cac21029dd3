"""Every operator on every type, proven: procedures with an attribute of every type and processes for records
of an entity, made through the API; generated ``where`` clauses (every operator, scalars, arrays, nulls,
and/or nested, root fields, attributes, the record's attributes as ``record.<shortId>`` and bare) and sorts,
paged by cursor; the API's answer compared with a plain-Python model of the same filter and order, on SQLite
and PostgreSQL. A 500 fails; so does a 4xx for a query the language allows. Junk values get a 4xx.

The examples are bounded and derandomized (``PROCESSION_QUERY_PROFILE``: ``query-ci``, the default, or
``query-thorough`` for a longer, random run)."""

from __future__ import annotations

import functools
import itertools
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from procession.api.app import create_app
from procession.bootstrap import Services
from procession.domain.attributes import TYPES
from procession.services.commands import EntityInput, ProcedureInput
from procession.services.configuration import define_entity, define_procedure
from tests.conftest import Team, make_team

settings.register_profile(
    "query-ci",
    max_examples=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    phases=[
        Phase.explicit,
        Phase.reuse,
        Phase.generate,
    ],  # a failure is shown as found, not shrunk for minutes
)
settings.register_profile(
    "query-thorough", max_examples=400, deadline=None, suppress_health_check=list(HealthCheck)
)
PROFILE = settings.get_profile(os.environ.get("PROCESSION_QUERY_PROFILE", "query-ci"))

NUMBERS = ("integer", "float", "decimal", "number", "integerEnum", "integerId", "datetime")
UNORDERED = ("multiStringEnum", "multiIntegerEnum", "multiPhotos", "multiDocuments", "externalObject")
NULL_ONLY = (*UNORDERED, "multiExternalObjects", "geolocation")
TEXTS = st.sampled_from(["", "a", "ab", "B", "é", "a b", "z", "😀"])
INTEGERS = st.one_of(st.integers(-3, 3), st.integers(-(2**63), 2**63 - 1))
FLOATS = st.one_of(st.integers(-3, 3), st.floats(-1e12, 1e12, allow_nan=False), st.integers(-(2**62), 2**62))
EPOCHS = st.one_of(st.sampled_from([0, 1, 1_700_000_000_000]), st.integers(0, 253402300799999))
STATUSES = ["OPEN", "COMPLETED", "CANCELLED"]
STATES = ["S1", "S2", "S3"]
RECORD_TYPES = ("string", "email", "integer", "boolean", "number", "date")


@dataclass
class World:
    """A team with an entity, files, anchor records and processes to refer to, and the API over it."""

    team: Team
    http: TestClient
    users: list[str]
    files: list[str]
    records: list[str]
    processes: list[str]
    made: Iterator[int] = field(default_factory=itertools.count)
    pools: dict[str, st.SearchStrategy[Any]] = field(default_factory=dict)


def values(world: World, kind: str) -> st.SearchStrategy[Any]:
    """Valid values of an attribute of type ``kind``, in their stored form (which the API takes back)."""
    world.pools = world.pools or pools(world)
    return world.pools[kind]


def pools(world: World) -> dict[str, st.SearchStrategy[Any]]:
    return {
        "string": TEXTS,
        "text": TEXTS,
        "name": st.sampled_from(["Ann", "ann", "Bob", "Zoë"]),
        "email": st.sampled_from(["a@x.io", "b@x.io", "Z@y.io"]),
        "phone": st.sampled_from(["+9177012", "77012", "12345"]),
        "url": st.sampled_from(["http://a.io", "https://b.io/x"]),
        "integer": INTEGERS,
        "integerId": INTEGERS,
        "float": FLOATS,
        "decimal": FLOATS,
        "number": FLOATS,
        "boolean": st.booleans(),
        "stringEnum": st.sampled_from(["lo", "mid", "hi"]),
        "integerEnum": st.sampled_from([1, 2, 30]),
        "multiStringEnum": st.lists(st.sampled_from(["lo", "hi"]), unique=True),
        "multiIntegerEnum": st.lists(st.sampled_from([1, 2]), unique=True),
        "date": st.sampled_from(["2024-01-02", "2023-12-31", "2024-01-10"]),
        "time": st.sampled_from(["09:00:00", "10:30:00", "23:59:59"]),
        "datetime": EPOCHS,
        "datetimeISO8601": st.sampled_from(["2024-01-02T03:04:05.000Z", "2023-01-02T03:04:05.123Z"]),
        "stringId": st.sampled_from(["S-1", "S-2", "S-10"]),
        "photo": st.sampled_from(world.files),
        "document": st.sampled_from(world.files),
        "multiPhotos": st.lists(st.sampled_from(world.files), unique=True),
        "multiDocuments": st.lists(st.sampled_from(world.files), unique=True),
        "externalObject": st.just({"a": 1}),
        "multiExternalObjects": st.just([{"a": 1}]),
        "geolocation": st.just({"lat": 1.5, "lng": 2.0}),
        "json": st.sampled_from(["x", "y", {"a": 1}, [1]]),
        "user": st.sampled_from(world.users),
        "record": st.sampled_from(world.records),
        "process": st.sampled_from(world.processes),
    }


@pytest.fixture(scope="module")
def world(services: Services) -> World:
    team = make_team(services)
    http = TestClient(create_app(services), raise_server_exceptions=False)
    http.headers["Authorization"] = f"Bearer {team.key()}"
    attributes = [
        {"shortId": "pk", "type": "string"},
        *({"shortId": f"r_{kind}", "type": kind} for kind in RECORD_TYPES),
    ]
    entity = {"shortId": "qcustomer", "label": "Q", "primaryKey": "pk", "attributes": attributes}
    services.run(define_entity, team.id, EntityInput.model_validate(entity))
    procedure(team, "anchor")
    files = []
    for i in range(2):
        r = http.post("/v1/ext/photo", files={"photo": (f"{i}.png", b"\x89PNG", "image/png")})
        files.append(r.json()["_data"]["id"])
    users = [u["id"] for u in http.get("/v1/ext/config").json()["_data"]["users"]]
    anchors = [create(http, "anchor", {"record": {"data": {"pk": f"anchor{i}"}}}) for i in range(2)]
    return World(team, http, users, files, [a["record"] for a in anchors], [a["id"] for a in anchors])


def procedure(team: Team, short: str) -> None:
    body = {
        "shortId": short,
        "entity": "qcustomer",
        "attributes": [{"shortId": f"a_{kind}", "type": kind} for kind in TYPES],
        "states": [{"shortId": s} for s in STATES],
        "transitions": {s: [o for o in STATES if o != s] for s in STATES},
    }
    for a in body["attributes"]:  # enums take their options
        if "Enum" in a["type"]:
            a["options"] = ["lo", "mid", "hi"] if "tring" in a["type"] else [1, 2, 30]
    team.services.run(define_procedure, team.id, ProcedureInput.model_validate(body))


def create(http: TestClient, short: str, body: dict) -> dict:
    r = http.post(f"/v1/ext/procedure/{short}/process", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json()["_data"])


@dataclass(frozen=True)
class Spec:
    """A field a query may name: its kind (number | text | boolean), its operators, the values it compares."""

    name: str
    kind: str
    ordered: bool
    values: st.SearchStrategy[Any]
    null_only: bool = False


def specs(world: World, made: list[dict]) -> list[Spec]:
    out = []
    for kind in TYPES:
        number = "number" if kind in NUMBERS else "boolean" if kind == "boolean" else "text"
        if kind == "json":  # any JSON, compared as text: strings, equal or not
            out.append(Spec("a_json", "text", False, st.sampled_from(["x", "y", "{"])))
        else:
            out.append(Spec(f"a_{kind}", number, True, values(world, kind), kind in NULL_ONLY))
    for kind in ("string", *RECORD_TYPES):
        short = "pk" if kind == "string" else f"r_{kind}"
        number = "number" if kind in NUMBERS else "boolean" if kind == "boolean" else "text"
        strategy = (
            values(world, kind) if short != "pk" else st.sampled_from([r["pk"] for r in RECORDS] + ["z"])
        )
        out.append(Spec(f"record.{short}", number, True, strategy))
        out.append(Spec(short, number, True, strategy))  # bare: the procedure has no attribute of that name
    times = [p["createdAt"] for p in made] or [0]
    ids = [p["id"] for p in made] or [str(uuid.uuid4())]
    out += [
        Spec("status", "text", True, st.sampled_from(STATUSES)),
        Spec("state", "text", False, st.sampled_from(STATES)),
        Spec("isDeleted", "boolean", True, st.booleans()),
        Spec(
            "createdAt",
            "number",
            True,
            st.sampled_from(times).flatmap(lambda t: st.sampled_from([max(t - 1, 0), t, t + 1])),
        ),
        Spec("assignedTo", "text", True, st.sampled_from(world.users)),
        Spec("id", "text", True, st.sampled_from(ids)),
    ]
    return out


RECORDS: list[dict[str, Any]] = []  # the records of the example being run (by their data, shortId-keyed)


@st.composite
def rhs(draw: Any, spec: Spec) -> Any:
    nullable = st.one_of(st.none(), spec.values) if not spec.null_only else st.none()
    form = draw(st.sampled_from(["bare", "array", "ops"]))
    if form == "bare":
        return draw(nullable)
    if form == "array":
        return draw(st.lists(nullable, min_size=1, max_size=3))
    ops = ["=", "!="] + ([">", ">=", "<", "<="] if spec.ordered and not spec.null_only else [])
    chosen = draw(st.lists(st.sampled_from(ops), min_size=1, max_size=2, unique=True))
    return {op: draw(nullable if op in ("=", "!=") else spec.values) for op in chosen}


@st.composite
def query(draw: Any, fields: list[Spec], depth: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for _ in range(draw(st.integers(0, 3))):
        spec = draw(st.sampled_from(fields))
        out[spec.name] = draw(rhs(spec))
    for group in ("or", "and"):
        if depth < 3 and draw(st.integers(0, 3)) == 0:
            out[group] = draw(st.lists(query(fields, depth + 1), min_size=1, max_size=3))
    return out


def value(spec: Spec, process: dict) -> Any:
    name = spec.name.removeprefix("record.")
    if spec.name.startswith("record.") or name == "pk" or name.startswith("r_"):
        record = next((r for r in RECORDS if process["record"] and r.get("_id") == process["record"]), None)
        found = None if record is None else record.get(name)
    elif name.startswith("a_"):
        found = process["data"].get(name)
    else:
        found = process[name]
    return float(found) if spec.kind == "number" and found is not None else found


def compares(spec: Spec, x: Any, op: str, v: Any) -> bool:
    if spec.kind == "number" and v is not None:
        v = float(v)
    if v is None:
        return (x is None) == (op == "=")
    if spec.name == "a_json" and x is not None and not isinstance(x, str):  # an object, a list: no string
        return op == "!="
    if op == "!=":
        return x is None or x != v
    if x is None:
        return False
    return {"=": x == v, ">": x > v, ">=": x >= v, "<": x < v, "<=": x <= v}[op]


def holds(fields: dict[str, Spec], where: dict, process: dict) -> bool:
    for key, rhs_ in where.items():
        if key in ("or", "and"):
            results = [holds(fields, q, process) for q in rhs_]
            if not (any(results) if key == "or" else all(results)):
                return False
            continue
        spec = fields[key]
        x = value(spec, process)
        if isinstance(rhs_, list):
            ok = any(compares(spec, x, "=", v) for v in rhs_)
        elif isinstance(rhs_, dict):
            ok = all(compares(spec, x, op, v) for op, v in rhs_.items())
        else:
            ok = compares(spec, x, "=", rhs_)
        if not ok:
            return False
    return True


def ordered(fields: dict[str, Spec], sort: list[dict], processes: list[dict]) -> list[str]:
    keys = [(fields[k["field"]], k.get("dir") == "desc") for k in sort]
    if sort[-1]["field"].startswith("a_") and all(k["field"] != "updatedAt" for k in sort):
        keys.append(
            (Spec("updatedAt", "number", True, st.nothing()), keys[0][1])
        )  # an attribute index's order
    keys.append((Spec("id", "text", True, st.nothing()), keys[0][1]))

    def cmp(a: dict, b: dict) -> int:
        for spec, desc in keys:
            x, y = value(spec, a), value(spec, b)
            if x == y:
                continue
            if x is None or y is None:
                return 1 if x is None else -1  # nulls last, either way
            return (1 if x > y else -1) * (-1 if desc else 1)
        return 0

    return [p["id"] for p in sorted(processes, key=functools.cmp_to_key(cmp))]


def listed(world: World, short: str, body: dict) -> list[str]:
    """Every page of the list, by cursor: the ids in the order given."""
    found: list[str] = []
    cursor = None
    for _ in range(200):
        r = world.http.post(
            f"/v1/ext/procedure/{short}/process/list", json=body | ({"cursor": cursor} if cursor else {})
        )
        assert r.status_code == 200, (body, r.text)
        reply = r.json()
        found += [p["id"] for p in reply["_data"]]
        cursor = reply["_meta"]["nextCursor"]
        if not reply["_meta"]["hasMore"]:
            return found
    raise AssertionError("the pages never end")


JUNK = st.one_of(
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
    st.booleans(),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.lists(st.integers(), max_size=2),
)


@settings(PROFILE)
@given(data=st.data())
def test_every_operator_on_every_type_matches_the_model(world: World, data: st.DataObject) -> None:
    short = f"q{next(world.made)}_{uuid.uuid4().hex[:6]}"
    procedure(world.team, short)
    attribute_kinds = {f"a_{kind}": kind for kind in TYPES if kind not in ("stringId", "integerId")}
    RECORDS.clear()
    for i in range(data.draw(st.integers(0, 3), label="records")):
        record = {"pk": f"{short}-{i}"}
        for kind in RECORD_TYPES:
            if data.draw(st.booleans()):
                record[f"r_{kind}"] = data.draw(values(world, kind), label=f"r_{kind}")
        RECORDS.append(record)
    made = []
    for _ in range(data.draw(st.integers(0, 7), label="processes")):
        body: dict[str, Any] = {"data": {}, "status": data.draw(st.sampled_from(STATUSES))}
        for short_id, kind in attribute_kinds.items():
            if data.draw(st.integers(0, 2)):
                body["data"][short_id] = data.draw(values(world, kind), label=short_id)
        if data.draw(st.booleans()):
            body["assignedTo"] = data.draw(st.sampled_from(world.users))
        for key in ("stringId", "integerId"):  # generated when absent
            if data.draw(st.booleans()):
                body["data"][f"a_{key}"] = data.draw(values(world, key))
        record = data.draw(st.sampled_from([None, *RECORDS])) if RECORDS else None
        if record is not None:
            body["record"] = {"data": {k: v for k, v in record.items() if not k.startswith("_")}}
        process = create(world.http, short, body)
        if record is not None:
            record["_id"] = process["record"]
        state = data.draw(st.sampled_from(STATES))
        if state != "S1":
            r = world.http.put(f"/v1/ext/procedure/{short}/process/{process['id']}", json={"state": state})
            assert r.status_code == 200, r.text
            process = r.json()["_data"]
        if data.draw(st.integers(0, 3)) == 0:
            r = world.http.delete(f"/v1/ext/procedure/{short}/process/{process['id']}")
            assert r.status_code == 200, r.text
            process = r.json()["_data"]
        made.append(process)
    fields = {s.name: s for s in specs(world, made)}
    sortable = [s for s in fields.values() if s.ordered and not s.null_only]
    for _ in range(data.draw(st.integers(1, 3), label="queries")):
        where = data.draw(query(list(fields.values())), label="where")
        deleted = data.draw(st.booleans(), label="includeDeleted")
        sort = [
            {"field": s.name, "dir": data.draw(st.sampled_from(["asc", "desc"]))}
            for s in data.draw(st.lists(st.sampled_from(sortable), max_size=2, unique_by=lambda s: s.name))
        ]
        body = {"where": where, "includeDeleted": deleted, "limit": data.draw(st.integers(1, 4))}
        found = listed(world, short, body | ({"sort": sort} if sort else {}))
        expected = [p for p in made if (deleted or not p["isDeleted"]) and holds(fields, where, p)]
        if sort:
            assert found == ordered(fields, sort, expected), (where, sort)
        else:
            assert sorted(found) == sorted(p["id"] for p in expected), where
    junk = {data.draw(st.sampled_from(sorted(fields)), label="junk field"): data.draw(JUNK, label="junk")}
    r = world.http.post(f"/v1/ext/procedure/{short}/process/list", json={"where": junk})
    assert r.status_code in (200, 400, 422), (junk, r.text)
