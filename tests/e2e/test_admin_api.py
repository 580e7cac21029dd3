"""The configuration API over HTTP: procedures with every attribute type, renames, state graph edits."""

from __future__ import annotations

from tests.e2e.conftest import Api

EVERY_TYPE = [
    ("s", "string", {}, "  x ", "  x "),
    ("t", "text", {}, "long text", "long text"),
    ("n", "name", {}, " Ada   Lovelace ", "Ada Lovelace"),
    ("e", "email", {}, "Ada@Example.COM", "Ada@example.com"),
    ("ph", "phone", {}, "+91 77012-14822", "+917701214822"),
    ("u", "url", {}, "https://example.com/a", "https://example.com/a"),
    ("i", "integer", {}, "42", 42),
    ("f", "float", {}, "1.5", 1.5),
    ("d", "decimal", {}, 2, 2),
    ("num", "number", {}, 3.25, 3.25),
    ("b", "boolean", {}, "true", True),
    ("se", "stringEnum", {"options": ["a", "b"]}, "b", "b"),
    ("ie", "integerEnum", {"options": [1, 2]}, "2", 2),
    ("mse", "multiStringEnum", {"options": ["a", "b"]}, ["a", "b", "a"], ["a", "b"]),
    ("mie", "multiIntegerEnum", {"options": [1, 2]}, [2, 1], [2, 1]),
    ("dt", "date", {}, "2024-02-29", "2024-02-29"),
    ("tm", "time", {}, "09:30", "09:30:00"),
    ("ms", "datetime", {}, "1618558867539", 1618558867539),
    ("iso", "datetimeISO8601", {}, "2023-09-01T06:27:30+05:30", "2023-09-01T00:57:30.000Z"),
    ("sid", "stringId", {"config": {"prefix": "X-"}}, None, "X-1"),
    ("iid", "integerId", {}, None, 1),
    (
        "ext",
        "externalObject",
        {"config": {"schema": {"type": "object", "required": ["k"]}}},
        {"k": 1},
        {"k": 1},
    ),
    ("mext", "multiExternalObjects", {}, [{"a": 1}], [{"a": 1}]),
    ("geo", "geolocation", {}, {"lat": 12.9, "lon": 77.6}, {"lat": 12.9, "lng": 77.6}),
    ("js", "json", {}, [1, {"a": None}], [1, {"a": None}]),
    ("usr", "user", {}, "shane.warne", "<shane>"),
]
BAD = {
    "e": "not-an-email",
    "i": 1.5,
    "b": "yes",
    "se": "c",
    "dt": "2023-02-30",
    "ext": {"j": 1},
    "geo": {"lat": 100, "lng": 0},
    "usr": "ghost",
    "ms": -1,
    "iso": "yesterday",
    "ph": "call me",
    "u": "ftp://x",
}


def test_a_procedure_with_every_attribute_type(api: Api) -> None:
    attributes = [{"shortId": s, "type": kind, **extra} for s, kind, extra, _, _ in EVERY_TYPE]
    attributes += [
        {"shortId": "pic", "type": "photo"},
        {"shortId": "pics", "type": "multiPhotos"},
        {"shortId": "doc", "type": "document"},
        {"shortId": "docs", "type": "multiDocuments"},
        {"shortId": "rec", "type": "record"},
        {"shortId": "proc", "type": "process"},
    ]
    r = api.http.post(
        "/v1/admin/procedures",
        json={
            "shortId": "everything",
            "attributes": attributes,
            "states": [{"shortId": "OPEN"}],
            "primaryKey": "sid",
        },
    )
    assert r.status_code == 201, r.text
    photo = api.http.post("/v1/ext/photo", files={"photo": ("p.png", b"png", "image/png")}).json()["_data"][
        "id"
    ]
    lead = api.http.post(
        "/v1/ext/procedure/lead/process", json={"record": {"data": {"phone_number": "123456"}}}
    ).json()["_data"]
    shane = next(
        u["id"]
        for u in api.http.get("/v1/ext/config").json()["_data"]["users"]
        if u["username"] == "shane.warne"
    )
    data = {s: v for s, _, _, v, _ in EVERY_TYPE if v is not None}
    data |= {
        "pic": photo,
        "pics": [photo],
        "doc": photo,
        "docs": [photo],
        "rec": lead["record"],
        "proc": lead["id"],
    }
    r = api.http.post("/v1/ext/procedure/everything/process", json={"data": data})
    assert r.status_code == 201, r.text
    stored = r.json()["_data"]["data"]
    for s, _, _, _, expected in EVERY_TYPE:
        assert stored[s] == (shane if expected == "<shane>" else expected), s
    r = api.http.post("/v1/ext/procedure/everything/process", json={"data": BAD})
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["_errors"]} == {f"data.{k}" for k in BAD}
    for ref in ({"pic": "nope"}, {"rec": lead["id"]}, {"proc": lead["record"]}):
        assert api.http.post("/v1/ext/procedure/everything/process", json={"data": ref}).status_code == 422


def test_renaming_a_short_id_rewrites_no_process_and_the_graph_can_change(api: Api) -> None:
    p = api.http.post("/v1/ext/procedure/lead/process", json={"data": {"city": "Pune"}}).json()["_data"]
    definition = api.http.get(f"/v1/admin/procedures/{p['procedure']}").json()["_data"]
    for a in definition["attributes"]:
        if a["shortId"] == "city":
            a["shortId"] = "town"
    definition["transitions"]["NEW"] = ["LOST"]
    body = {
        k: definition[k]
        for k in (
            "shortId",
            "label",
            "attributes",
            "primaryKey",
            "states",
            "initialState",
            "transitions",
            "version",
        )
    }
    body["attributes"] = [{k: v for k, v in a.items() if k != "procedure"} for a in body["attributes"]]
    r = api.http.put(f"/v1/admin/procedures/{p['procedure']}", json=body)
    assert r.status_code == 200, r.text
    got = api.http.get(f"/v1/ext/procedure/lead/process/{p['id']}").json()["_data"]
    assert got["data"]["town"] == "Pune" and "city" not in got["data"]
    assert (
        api.http.put(f"/v1/ext/procedure/lead/process/{p['id']}", json={"state": "IN_PROGRESS"}).status_code
        == 422
    )
    assert (
        api.http.put(f"/v1/admin/procedures/{p['procedure']}", json=body).status_code == 409
    )  # stale version


def test_bad_definitions_are_422_and_duplicates_409(api: Api) -> None:
    base = {"shortId": "thing", "states": [{"shortId": "A"}]}
    for bad in (
        {**base, "attributes": [{"shortId": "x", "type": "colour"}]},
        {**base, "attributes": [{"shortId": "x", "type": "stringEnum"}]},
        {**base, "attributes": [{"shortId": "x", "type": "string", "formula": "data.("}]},
        {**base, "transitions": {"A": ["B"]}},
        {**base, "primaryKey": "missing"},
        {**base, "entity": "nope"},
        {**base, "states": []},
        {**base, "attributes": [{"shortId": "x", "type": "string"}, {"shortId": "x", "type": "integer"}]},
    ):
        assert api.http.post("/v1/admin/procedures", json=bad).status_code == 422, bad
    assert api.http.post("/v1/admin/procedures", json=base).status_code == 201
    assert api.http.post("/v1/admin/procedures", json=base).status_code == 409
    assert api.http.post("/v1/admin/users", json={"username": "new.person"}).status_code == 201
    assert api.http.post("/v1/admin/users", json={"username": "new.person"}).status_code == 409
    assert (
        api.http.post("/v1/admin/pods", json={"shortId": "p1", "members": ["new.person"]}).status_code == 201
    )
    assert api.http.post("/v1/admin/pods", json={"shortId": "p2", "members": ["ghost"]}).status_code == 422
