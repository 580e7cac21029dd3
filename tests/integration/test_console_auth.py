"""The console's door, without a browser: pages need a session; a session comes from a team, a username and
an argon2-checked password, in a signed, HttpOnly, SameSite cookie; every form carries the session's CSRF
token; settings are an admin's; ``/docs`` needs nothing from outside the package."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from procession.api.app import create_app
from procession.bootstrap import Services
from procession.domain.errors import Invalid
from procession.services.accounts import set_password
from procession.store import tables as t
from tests.conftest import Team, make_team

ADMIN_PASSWORD, MEMBER_PASSWORD = "correct horse battery", "member password 1"


@pytest.fixture(scope="module")
def team(sqlite_services: Services) -> Team:
    team = make_team(sqlite_services)
    sqlite_services.run(set_password, team.id, "admin", ADMIN_PASSWORD)
    sqlite_services.run(set_password, team.id, "shane.warne", MEMBER_PASSWORD)
    return team


@pytest.fixture
def client(sqlite_services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(sqlite_services), follow_redirects=False) as c:
        yield c


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def signed_in(client: TestClient, team: Team, username: str, password: str) -> str:
    """Sign in; the session's CSRF token."""
    form = client.get("/sign-in")
    reply = client.post(
        "/sign-in",
        data={"csrf": csrf_of(form.text), "team": team.slug, "username": username, "password": password},
    )
    assert reply.status_code == 303, reply.text
    return csrf_of(client.get("/procedures").text)


def test_a_page_without_a_session_sends_to_sign_in_and_back(client: TestClient) -> None:
    reply = client.get("/procedures/lead/processes?status=OPEN")
    assert reply.status_code == 303
    assert reply.headers["location"] == "/sign-in?next=/procedures/lead/processes%3Fstatus%3DOPEN"


def test_signing_in_sets_a_signed_httponly_samesite_cookie(client: TestClient, team: Team) -> None:
    form = client.get("/sign-in")
    reply = client.post(
        "/sign-in",
        data={"csrf": csrf_of(form.text), "team": team.slug, "username": "admin",
              "password": ADMIN_PASSWORD, "next": "/procedures/lead"},
    )  # fmt: skip
    assert reply.status_code == 303 and reply.headers["location"] == "/procedures/lead"
    cookie = reply.headers["set-cookie"]
    assert "procession_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert ADMIN_PASSWORD not in cookie
    assert client.get("/procedures/lead").status_code == 200


@pytest.mark.parametrize(
    ("team_slug", "username", "password"),
    [(None, "admin", "wrong password"), (None, "nobody", ADMIN_PASSWORD), ("no-such-team", "admin", "x")],
)
def test_a_wrong_team_user_or_password_is_refused_alike(
    client: TestClient, team: Team, team_slug: str | None, username: str, password: str
) -> None:
    form = client.get("/sign-in")
    reply = client.post(
        "/sign-in",
        data={"csrf": csrf_of(form.text), "team": team_slug or team.slug, "username": username,
              "password": password},
    )  # fmt: skip
    assert reply.status_code == 401
    assert "the team, username or password is wrong" in reply.text
    assert "procession_session" not in reply.headers.get("set-cookie", "")


def test_the_sign_in_form_needs_its_csrf_token(client: TestClient, team: Team) -> None:
    client.get("/sign-in")
    reply = client.post(
        "/sign-in",
        data={"csrf": "forged", "team": team.slug, "username": "admin", "password": ADMIN_PASSWORD},
    )
    assert reply.status_code == 403


def test_every_form_needs_the_sessions_csrf_token(client: TestClient, team: Team) -> None:
    token = signed_in(client, team, "admin", ADMIN_PASSWORD)
    assert client.post("/settings/keys", data={"label": "x", "role": "member"}).status_code == 403
    assert client.post("/settings/keys", data={"label": "x", "csrf": "other"}).status_code == 403
    made = client.post("/settings/keys", data={"label": "x", "role": "member", "csrf": token})
    assert made.status_code == 200 and "prk_" in made.text
    assert client.post("/sign-out").status_code == 403  # signing out is a form too


def test_a_member_is_refused_the_settings_and_an_admin_is_not(client: TestClient, team: Team) -> None:
    signed_in(client, team, "shane.warne", MEMBER_PASSWORD)
    assert "/settings" not in client.get("/procedures").text
    for path in ("/settings", "/settings/keys", "/settings/users", "/procedures/lead/automations/new"):
        assert client.get(path).status_code == 403, path
    client.cookies.clear()
    signed_in(client, team, "admin", ADMIN_PASSWORD)
    for path in ("/settings", "/settings/keys", "/settings/users", "/procedures/lead/automations/new"):
        assert client.get(path).status_code == 200, path


def test_signing_out_ends_the_session(client: TestClient, team: Team) -> None:
    token = signed_in(client, team, "admin", ADMIN_PASSWORD)
    reply = client.post("/sign-out", data={"csrf": token})
    assert reply.status_code == 303 and reply.headers["location"] == "/sign-in"
    assert client.get("/procedures").status_code == 303


def test_an_edited_cookie_is_no_session(client: TestClient, team: Team) -> None:
    signed_in(client, team, "admin", ADMIN_PASSWORD)
    value = client.cookies["procession_session"]
    client.cookies.clear()
    client.cookies.set("procession_session", value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    assert client.get("/procedures").status_code == 303


def test_after_sign_in_only_a_path_of_this_site(client: TestClient, team: Team) -> None:
    form = client.get("/sign-in")
    reply = client.post(
        "/sign-in",
        data={"csrf": csrf_of(form.text), "team": team.slug, "username": "admin",
              "password": ADMIN_PASSWORD, "next": "//elsewhere.example/"},
    )  # fmt: skip
    assert reply.headers["location"] == "/"


def test_passwords_are_kept_as_argon2_hashes_only(sqlite_services: Services, team: Team) -> None:
    with sqlite_services.engine.connect() as conn:
        stored = conn.scalar(
            sa.select(t.users.c.password_hash).where(
                t.users.c.team_id == team.id, t.users.c.username == "admin"
            )
        )
    assert stored.startswith("$argon2id$") and ADMIN_PASSWORD not in stored
    with pytest.raises(Invalid):
        sqlite_services.run(set_password, team.id, "admin", "short")


def test_docs_are_served_with_their_assets_from_the_package(client: TestClient) -> None:
    html = client.get("/docs").text
    assert "cdn" not in html.lower()
    for asset in re.findall(r'(?:src|href)="(/docs/assets/[^"]+)"', html):
        assert client.get(asset).status_code == 200, asset
    assert "/docs/assets/swagger-ui-bundle.js" in html
