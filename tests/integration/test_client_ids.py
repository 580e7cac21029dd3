"""Ids never reveal other teams: an id a client chooses (a user's, an upload's) that another team has is as
free as any other, and an id a client names (a user, a pod, a record, a parent process) that only another
team has is refused exactly as an id nobody has. Through the real app, on each database."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from procession.api.app import create_app
from procession.bootstrap import Services
from procession.services.teams import create_key, create_team
from tests.conftest import Team, make_team

USERS, LEADS = "/v1/admin/users", "/v1/ext/procedure/lead/process"
# ids a client may choose for a user: any text up to the column's 36 characters (uuids among them)
USER_IDS = st.one_of(st.uuids().map(str), st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,35}", fullmatch=True))


@pytest.fixture(scope="module")
def app_client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services)) as client:  # one event loop for every request
        yield client


class As:
    """Requests to the app with one team's admin key."""

    def __init__(self, client: TestClient, key: str) -> None:
        self.client, self.headers = client, {"Authorization": f"Bearer {key}"}

    def get(self, url: str) -> httpx.Response:
        return self.client.get(url, headers=self.headers)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.client.post(url, headers=self.headers, **kwargs)


@pytest.fixture
def as_team(app_client: TestClient) -> Callable[[Team], As]:
    return lambda team: As(app_client, team.key())


@pytest.fixture(scope="module")
def team_a(services: Services) -> Team:
    return make_team(services)


def bare_team(services: Services) -> str:
    """An admin key of a new team with nothing in it: every id is free there."""
    team_id = create_team(services.engine, f"t{uuid.uuid4().hex[:12]}")
    return services.run(create_key, team_id, role="admin")


def shape(r: httpx.Response) -> tuple[int, list[str], list[str], list[str | None]]:
    """What a client can tell from a reply besides its values: status, fields, error codes and fields."""
    body = r.json()
    data = body["_data"]
    return (
        r.status_code,
        sorted(data) if isinstance(data, dict) else [],
        [e["code"] for e in body["_errors"]],
        [e.get("field") for e in body["_errors"]],
    )


def username(user_id: str) -> str:
    return f"u{uuid.uuid5(uuid.NAMESPACE_OID, user_id).hex[:20]}"


def test_a_user_id_another_team_has_is_free_in_this_one(
    team_factory: Callable[[], Team], as_team: Callable[[Team], As]
) -> None:
    a, b = team_factory(), team_factory()
    chosen = str(uuid.uuid4())
    made = as_team(a).post(USERS, json={"id": chosen, "username": "ann", "name": "Ann of A"})
    assert made.status_code == 201, made.text
    http = as_team(b)
    r = http.post(USERS, json={"id": chosen, "username": "bea", "name": "Bea of B"})
    assert r.status_code == 201, r.text
    assert r.json()["_data"] == {"id": chosen, "username": "bea", "name": "Bea of B", "role": "member"}
    # each team sees its own user under that id, and names it by that id
    lead = http.post(LEADS, json={"data": {"firstname": "Ted"}, "assignedTo": chosen})
    assert lead.status_code == 201 and lead.json()["_data"]["assignedTo"] == chosen, lead.text
    users_of = {
        t.slug: {u["id"]: u["username"] for u in as_team(t).get("/v1/ext/config").json()["_data"]["users"]}
        for t in (a, b)
    }
    assert users_of[a.slug][chosen] == "ann" and users_of[b.slug][chosen] == "bea"
    # within its own team an id is still taken once
    again = http.post(USERS, json={"id": chosen, "username": "cal"})
    assert again.status_code == 409 and again.json()["_errors"][0]["field"] == "id", again.text


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user_id=USER_IDS, file_id=st.uuids().map(str))
def test_creating_with_an_id_another_team_has_answers_as_with_a_fresh_one(
    services: Services, app_client: TestClient, team_a: Team, user_id: str, file_id: str
) -> None:
    """For any id team A uses, team B's create with it answers the same status and shape as with an id of
    its own namespace that nobody has."""
    a = As(app_client, team_a.key())
    a.post(USERS, json={"id": user_id, "username": username(user_id)})  # 201, or 409 if drawn before
    a.post(f"/v1/ext/photo/{file_id}", files={"photo": ("a.png", b"of team A", "image/png")})
    http = As(app_client, bare_team(services))
    fresh = str(uuid.uuid4())
    taken = http.post(USERS, json={"id": user_id, "username": username(user_id)})
    free = http.post(USERS, json={"id": fresh, "username": username(fresh)})
    assert shape(taken) == shape(free) == (201, ["id", "name", "role", "username"], [], []), taken.text
    assert taken.json()["_data"]["id"] == user_id
    photo = {"photo": ("b.png", b"of team B", "image/png")}
    taken = http.post(f"/v1/ext/photo/{file_id}", files=photo)
    free = http.post(f"/v1/ext/photo/{uuid.uuid4()}", files=photo)
    assert shape(taken) == shape(free) and taken.status_code == 201, taken.text
    assert http.get(f"/v1/ext/photo/{file_id}").content == b"of team B"
    assert a.get(f"/v1/ext/photo/{file_id}").content == b"of team A"


def test_naming_another_teams_id_is_answered_as_naming_an_id_nobody_has(
    team_factory: Callable[[], Team], as_team: Callable[[Team], As]
) -> None:
    """A user, a pod, a record or a parent process named by an id only another team has."""
    a, b = team_factory(), team_factory()
    ha = as_team(a)
    config = ha.get("/v1/ext/config").json()["_data"]
    lead = ha.post(
        LEADS, json={"data": {"firstname": "Ted"}, "record": {"data": {"phone_number": "7701214822"}}}
    ).json()["_data"]
    ticket = ha.post("/v1/ext/procedure/ticket/process", json={"data": {}}).json()["_data"]
    assert lead["record"] and ticket["id"]
    theirs: dict[str, tuple[str, str, Callable[[str], dict[str, Any]]]] = {
        "assignedTo": (LEADS, config["users"][0]["id"], lambda i: {"assignedTo": i}),
        "belongsTo": (LEADS, config["pods"][0]["id"], lambda i: {"belongsTo": i}),
        "record.id": (LEADS, lead["record"], lambda i: {"record": {"id": i}}),
        "parentProcess": (
            "/v1/ext/procedure/fieldvisit/process",
            ticket["id"],
            lambda i: {"parentProcess": i},
        ),
    }
    hb = as_team(b)
    for field, (route, their_id, body) in theirs.items():
        nobodys = str(uuid.uuid4())
        seen = hb.post(route, json=body(their_id))
        unseen = hb.post(route, json=body(nobodys))
        assert seen.status_code == unseen.status_code == 422, (field, seen.text)
        assert seen.json()["_errors"] == orjson.loads(unseen.text.replace(nobodys, their_id))["_errors"], (
            field
        )
