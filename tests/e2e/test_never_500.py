"""Never a 500 for what a member can send: edited cursors, text UTF-8 cannot encode, queries past the limits,
and any odd JSON body get a 4xx in the envelope, naming the problem, and the connection stays usable."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from procession.config import SECRET_FILE
from procession.domain.query import MAX_ALL_VALUES, MAX_DEPTH, MAX_NODES, MAX_SORT_KEYS, MAX_VALUES
from procession.store import search
from procession.store.search import encode_cursor
from tests.e2e.conftest import Api

LEADS = "/v1/ext/procedure/lead/process"


def send(api: Api, method: str, path: str, body: Any, *, raw: bool = False) -> httpx.Response:
    """``body`` as JSON, lone surrogates escaped (``\\ud800``) or, with ``raw``, as their bytes (CESU-8)."""
    content = json.dumps(body, ensure_ascii=not raw).encode("utf-8", "surrogatepass")
    return api.http.request(method, path, content=content, headers={"Content-Type": "application/json"})


def connection(r: httpx.Response) -> Any:
    return r.extensions["network_stream"].get_extra_info("client_addr")


def still_usable(api: Api, before: httpx.Response) -> None:
    """The next request on the same keep-alive connection is answered."""
    r = api.http.post(f"{LEADS}/list", json={"limit": 1})
    assert r.status_code == 200, r.text
    assert connection(r) == connection(before), "the server closed the connection"


def error(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["_data"] is None and body["_errors"][0]["code"] == code, body
    return body["_errors"][0]


def create(api: Api, **body: Any) -> dict:
    r = api.http.post(LEADS, json=body)
    assert r.status_code == 201, r.text
    return r.json()["_data"]


def first_page(api: Api, body: dict) -> dict:
    r = api.http.post(f"{LEADS}/list", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def signed(api: Api, cursor: str, edit: Any) -> str:
    """``cursor`` with its payload edited by ``edit`` and signed again with the server's own key: the values
    are then checked against the sort keys."""
    payload = cursor.split(".")[0]
    decoded = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    edit(decoded)
    key = (api.team.services.settings.data_dir / SECRET_FILE).read_text().strip().encode()
    payload = json.dumps(decoded).encode()  # integers past 64 bits too
    return f"{search._b64(payload)}.{search._b64(search._tag(key, payload))}"


def test_an_edited_or_foreign_cursor_is_400(api: Api) -> None:
    for i in range(4):
        create(api, data={"score": i, "city": f"c{i}"})
    query = {"limit": 1, "sort": [{"field": "score"}, {"field": "city", "dir": "desc"}]}
    cursor = first_page(api, query)["_meta"]["nextCursor"]
    payload, tag = cursor.split(".")
    sent = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    edited = base64.urlsafe_b64encode(orjson.dumps({**sent, "v": [[1], {}, 2]})).decode()
    forged = base64.urlsafe_b64encode(orjson.dumps({"s": "0" * 16, "v": ["x", 1, None]})).decode()
    foreign = encode_cursor(b"another server's key............", "0" * 16, [1.0, "c1", "x"])
    bad = [
        f"{edited}.{tag}",  # values edited, the tag kept
        forged,  # the old form: a plain hash
        foreign,  # made with another key
        f"{payload}.{tag[:-3]}xyz",
        "not a cursor at all",
        "\u00e9" * 10,
        signed(api, cursor, lambda d: d["v"].__setitem__(0, "1")),  # a number key given text
        signed(api, cursor, lambda d: d["v"].__setitem__(1, {"$ne": 0})),  # a text key given an object
        signed(api, cursor, lambda d: d["v"].__setitem__(-1, None)),  # the id given NULL
        signed(api, cursor, lambda d: d["v"].__setitem__(-1, 2**64)),  # the id given a number
        signed(api, cursor, lambda d: d["v"].append("x")),  # one value too many
    ]
    for value in bad:
        r = api.http.post(f"{LEADS}/list", json={**query, "cursor": value})
        assert error(r, 400, "invalid_cursor")["field"] == "cursor", value
    # another query's cursor: refused too
    r = api.http.post(f"{LEADS}/list", json={"limit": 1, "cursor": cursor})
    error(r, 400, "invalid_cursor")
    still_usable(api, r)
    # the cursor as it came pages on
    page = first_page(api, {**query, "cursor": cursor})
    assert [p["data"]["score"] for p in page["_data"]] == [1]
    assert signed(api, cursor, lambda d: None)  # re-signed unchanged: taken
    assert first_page(api, {**query, "cursor": signed(api, cursor, lambda d: None)})["_data"] == page["_data"]


def test_a_streamed_body_past_the_limit_is_413_and_the_client_goes_on(api: Api) -> None:
    """Sent in chunks (no Content-Length): the limit is met while FastAPI reads the body."""

    def chunks() -> Iterator[bytes]:
        yield b'{"data": {"source": "'
        for _ in range(20):
            yield b"x" * 65_536  # 1.25 MiB in all, past the test server's 1 MiB

    r = api.http.post(LEADS, content=chunks(), headers={"Content-Type": "application/json"})
    assert error(r, 413, "too_large")
    assert api.http.post(f"{LEADS}/list", json={"limit": 1}).status_code == 200


def _surrogate_cases(pid: str, pk: str, procedure_id: str) -> list[tuple[str, str, Any, str]]:
    state = {"shortId": "A", "label": "\ud800"}
    return [
        ("POST", LEADS, {"data": {"city": "Pu\ud800ne"}}, "data.city"),
        ("POST", LEADS, {"data": {"ci\udfffty": "Pune"}}, "data.ci\ufffdty"),
        ("POST", LEADS, {"record": {"data": {"email": "\udc00@x.io"}}}, "record.data.email"),
        ("POST", LEADS, {"assignedTo": "\ud83d"}, "assignedTo"),
        ("PUT", f"{LEADS}/{pid}", {"state": "\udbff"}, "state"),
        ("PUT", f"{LEADS}/lead_id/{pk}", {"data": {"city": ["ok", "\ud800"]}}, "data.city.1"),
        ("POST", f"{LEADS}/list", {"where": {"or": [{"city": "x"}, {"city": "\ud800"}]}}, "where.or.1.city"),
        ("POST", f"{LEADS}/list", {"where": {"score": {"\udc00": 1}}}, "where.score.\ufffd"),
        ("POST", f"{LEADS}/list", {"sort": [{"field": "\ud800"}]}, "sort.0.field"),
        ("POST", f"{LEADS}/list", {"cursor": "abc\ud800"}, "cursor"),
        (
            "POST",
            f"/v1/internal/procedure/{procedure_id}/process/list",
            {"where": {"\ud800": 1}},
            "where.\ufffd",
        ),
        ("POST", "/v1/admin/users", {"username": "someone", "name": "\ud800"}, "name"),
        ("POST", "/v1/admin/pods", {"shortId": "pod9", "members": ["admin", "\ud800"]}, "members.1"),
        ("POST", "/v1/admin/procedures", {"shortId": "p9", "states": [state]}, "states.0.label"),
        (
            "PATCH",
            LEADS,
            {"processes": [{"id": pid}, {"id": pid, "data": {"city": "\ud800"}}]},
            "processes.1.data.city",
        ),
        ("POST", f"{LEADS}/bulk-create", {"processes": [{"data": {"\udfff": 1}}]}, "processes.0.data.\ufffd"),
    ]


@pytest.mark.parametrize("raw", [False, True], ids=["escaped", "bytes"])
def test_a_lone_surrogate_is_422_naming_the_field_in_every_route(api: Api, raw: bool) -> None:
    p = create(api, data={"city": "Pune"})
    procedure_id = api.http.get("/v1/ext/config").json()["_data"]["procedures"]
    procedure_id = next(x["id"] for x in procedure_id if x["shortId"] == "lead")
    for method, path, body, field in _surrogate_cases(p["id"], p["data"]["lead_id"], procedure_id):
        r = send(api, method, path, body, raw=raw)
        err = error(r, 422, "invalid_character")
        assert (err["field"], "surrogate" in err["message"]) == (field, True), (method, path)
        still_usable(api, r)
    # nothing was kept: the process is as created, no job was made
    assert api.http.get(f"{LEADS}/{p['id']}").json()["_data"]["data"]["city"] == "Pune"
    # a surrogate pair (an emoji), escaped, is text like any other
    r = send(api, "PUT", f"{LEADS}/{p['id']}", {"data": {"city": "\ud83d\ude00"}})
    assert r.status_code == 200 and r.json()["_data"]["data"]["city"] == "\U0001f600"


def nested(depth: int) -> dict:
    query: dict = {"score": 1}
    for i in range(depth):
        query = {"and" if i % 2 else "or": [query, {"city": f"c{i}"}]}
    return query


def test_queries_past_the_limits_are_422_too_complex(api: Api) -> None:
    create(api, data={"score": 1, "city": "c0"})
    ok = [
        {"where": {"or": [{"score": i} for i in range(MAX_NODES - 1)]}},  # the group and 99 comparisons
        {"where": nested(MAX_DEPTH)},
        {"where": {"score": list(range(MAX_VALUES))}},
        {
            "where": {
                "score": list(range(MAX_VALUES)),
                "city": [str(i) for i in range(MAX_ALL_VALUES - MAX_VALUES)],
            }
        },
        {"sort": [{"field": f} for f in ("score", "city", "state", "createdAt", "firstname")]},
    ]
    for body in ok:
        first_page(api, body)
    too_many_branches = {"or": [{"score": i} for i in range(1000)]}
    past: list[tuple[dict, str | None, str]] = [
        ({"where": too_many_branches}, "where", str(MAX_NODES)),
        ({"where": {"or": [{"score": i} for i in range(MAX_NODES)]}}, "where", str(MAX_NODES)),
        ({"where": {"and": [{} for _ in range(MAX_NODES + 1)]}}, "where", str(MAX_NODES)),
        ({"where": nested(MAX_DEPTH + 1)}, None, str(MAX_DEPTH)),
        ({"where": nested(300)}, None, str(MAX_DEPTH)),
        ({"where": {"score": list(range(65_536))}}, "where.score", "1,000"),
        ({"where": {"or": [{"score": list(range(1000))}] * 3}}, None, "2,000"),
        ({"sort": [{"field": "score"}] * 1000}, "sort", str(MAX_SORT_KEYS)),
        ({"sort": [{"field": "score"}] * (MAX_SORT_KEYS + 1)}, "sort", str(MAX_SORT_KEYS)),
    ]
    for body, field, limit in past:
        r = api.http.post(f"{LEADS}/list", json=body)
        err = error(r, 422, "too_complex")
        assert limit in err["message"], err
        assert field is None or err["field"] == field, err
        still_usable(api, r)


# odd JSON: every type, numbers past 64 bits, lone surrogates (in most strings), NUL, nesting; next to values
# that pass, so that the odd ones get as far as they can
SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)
TEXT = st.lists(st.one_of(SURROGATES, st.characters(), st.just("\x00")), max_size=6).map("".join)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
    st.sampled_from(["NEW", "OPEN", "admin", "LEAD-911", "2021-04-16T07:21:07Z", "1618558867539"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=8,
)
TEXTS = st.sampled_from(["city", "firstname", "source", "country", "lead_id", "full_name"])  # any string goes
ATTRS = st.one_of(TEXTS, st.sampled_from(["score", "phone_num"]), TEXT)
DATA = st.dictionaries(ATTRS, st.one_of(TEXT, VALUES), max_size=4)
FIELDS = st.one_of(ATTRS, st.sampled_from(["status", "state", "assignedTo", "createdAt", "id", "isDeleted"]))
OPERATORS = st.dictionaries(st.one_of(st.sampled_from(["=", "!=", ">", "<=", "~"]), TEXT), VALUES, max_size=3)
RHS = st.one_of(TEXT, VALUES, OPERATORS, st.lists(TEXT, max_size=3))
WHERE = st.recursive(
    st.dictionaries(FIELDS, RHS, max_size=3),
    lambda inner: st.dictionaries(st.sampled_from(["and", "or"]), st.lists(inner, max_size=3), max_size=2),
    max_leaves=6,
)


def either(*valid: Any) -> st.SearchStrategy:
    return st.one_of(st.sampled_from(valid), TEXT, VALUES)


WRITE = {
    "state": either("NEW", "IN_PROGRESS"),
    "status": either("OPEN"),
    "assignedTo": either("admin", "shane.warne"),
    "nextActionAt": either(1618558867539, "1618558867539"),
    "belongsTo": VALUES,
    "parentProcess": VALUES,
}
CREATE = st.fixed_dictionaries(
    {"data": st.one_of(DATA, VALUES)},
    optional={**WRITE, "record": st.one_of(st.fixed_dictionaries({"data": DATA}), VALUES)},
)
UPDATE = st.fixed_dictionaries(
    {"data": st.one_of(DATA, VALUES)}, optional={**WRITE, "isDeleted": either(False), "version": VALUES}
)
SORT = st.lists(st.fixed_dictionaries({"field": FIELDS}, optional={"dir": either("asc", "desc")}), max_size=3)
LIST = st.fixed_dictionaries(
    {"where": st.one_of(WHERE, VALUES)},
    optional={
        "sort": st.one_of(SORT, VALUES),
        "cursor": st.one_of(TEXT, VALUES),
        "skip": either(0, 5),
        "limit": either(1, 100),
        "includeDeleted": either(True),
    },
)
# near-valid bodies: the shape right, the text odd (it reaches storage and SQL unless refused first)
NEAR_DATA = st.dictionaries(TEXTS, TEXT, min_size=1, max_size=3)
NEAR_CREATE = st.fixed_dictionaries(
    {"data": NEAR_DATA},
    optional={"state": st.just("IN_PROGRESS"), "assignedTo": st.one_of(TEXT, st.just("admin"))},
)
NEAR_UPDATE = st.fixed_dictionaries({"data": NEAR_DATA}, optional={"state": st.one_of(TEXT, st.just("NEW"))})
NEAR_RHS = st.one_of(
    TEXT,
    st.lists(TEXT, min_size=1, max_size=3),
    st.dictionaries(st.sampled_from(["=", "!=", ">", "<="]), TEXT, min_size=1, max_size=2),
)
NEAR_LIST = st.fixed_dictionaries(
    {
        "where": st.dictionaries(
            st.one_of(TEXTS, st.sampled_from(["state", "assignedTo", "id"])), NEAR_RHS, min_size=1
        )
    },
    optional={"sort": st.lists(st.fixed_dictionaries({"field": TEXTS}), max_size=2), "cursor": TEXT},
)
CALLS = st.one_of(
    st.tuples(st.just("create"), st.one_of(NEAR_CREATE, CREATE, VALUES)),
    st.tuples(st.just("update"), st.one_of(NEAR_UPDATE, UPDATE, VALUES)),
    st.tuples(st.just("list"), st.one_of(NEAR_LIST, LIST, VALUES)),
)


@settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(call=CALLS, raw=st.booleans())
def test_odd_json_bodies_never_get_a_5xx_nor_lose_the_connection(api: Api, call: tuple, raw: bool) -> None:
    route, body = call
    path = {"create": LEADS, "list": f"{LEADS}/list"}.get(route)
    if path is None:
        path = f"{LEADS}/{create(api)['id']}"
    r = send(api, "PUT" if route == "update" else "POST", path, body, raw=raw)
    assert r.status_code < 500, (r.status_code, r.text)
    reply = r.json()
    assert set(reply) == {"_data", "_meta", "_errors"}
    assert bool(reply["_errors"]) == (r.status_code >= 400), reply
    still_usable(api, r)
