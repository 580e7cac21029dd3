"""Connectors with plain objects: their steps checked when saved, the calls HubSpot's and Dropbox's steps
make and what each reply means, exports, and credentials sealed with rotating keys."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from cryptography.fernet import Fernet

from procession.connectors.addresses import check_url
from procession.connectors.dropbox import Upload, export_csv
from procession.connectors.flow import Account, Done, Fail, Next, Retry
from procession.connectors.hubspot import Upsert, properties_of
from procession.connectors.outbound import Reply
from procession.connectors.secrets import SecretsUnreadable, Vault
from procession.domain.automations import parse_automation
from procession.domain.connectors import Connector, Link
from procession.domain.errors import Invalid
from tests.unit.test_process import lead

HS = Connector("c-hs", "crm", "hubspot", "https://api.hubapi.com", {}, ("token",), 1, 0, 0)
BOX = Connector("c-box", "box", "dropbox", "https://api.dropboxapi.com", {}, ("token",), 1, 0, 0)
HTTP = Connector(
    "c-http", "api", "http", "https://api.example.com/v2", {"authHeader": "X-Key"}, ("auth",), 1, 0, 0
)
CONNECTORS = {key: c for c in (HS, BOX, HTTP) for key in (c.id, c.name)}


def parse(*steps: dict[str, Any]) -> Any:
    body = {"name": "a", "trigger": {"type": "manual"}, "steps": list(steps)}
    return parse_automation(
        body, lead(), id="a1", version=1, procedures={}, check_url=check_url, connectors=CONNECTORS
    )


def reply(status: int, body: Any = None, **headers: str) -> Reply:
    raw = body if isinstance(body, bytes) else orjson.dumps(body) if body is not None else b""
    return Reply(status, headers, raw, False, 1)


def test_connector_steps_are_stored_by_connector_id_and_checked_whole() -> None:
    upsert = {"name": "crm", "type": "hubspot.upsert", "connector": "crm", "object": "contacts",
              "properties": {"email": "process.record.email"}}  # fmt: skip
    automation = parse(upsert, {"name": "call", "type": "http", "connector": "api", "url": "/leads"})
    assert automation.steps[0].config["connector"] == "c-hs"
    assert automation.steps[0].config["idProperty"] == "email"  # contacts: found by email
    assert automation.steps[1].config["url"] == "/leads"
    with pytest.raises(Invalid) as caught:
        parse(
            upsert | {"connector": "box", "object": "companies", "properties": {"Bad Name": "1 +"}},
            {
                "name": "up",
                "type": "dropbox.upload",
                "connector": "nope",
                "path": "no-slash",
                "content": "xml",
            },
            {"name": "call", "type": "http", "connector": "api", "url": "https://elsewhere.example/x"},
        )
    codes = {(e.field, e.code) for e in caught.value.errors}
    assert codes >= {
        ("steps[0].connector", "wrong_connector"),
        ("steps[0].object", "invalid_value"),
        ("steps[0].properties", "invalid_value"),
        ("steps[0].properties.Bad Name", "invalid_expression"),
        ("steps[1].connector", "unknown_connector"),
        ("steps[1].path", "invalid_value"),
        ("steps[1].content", "invalid_value"),
        ("steps[2].url", "invalid_url"),  # a connector's step names a path
    }
    with pytest.raises(Invalid) as caught:
        parse(upsert | {"properties": {"firstname": "'Ada'"}})  # contacts are found by email: send it
    assert [e.field for e in caught.value.errors] == ["steps[0].idProperty"]


def test_hubspot_values_are_strings_and_nulls_are_left_out() -> None:
    assert properties_of({"a": 17, "b": False, "c": None, "d": 2.5, "e": "x", "f": 3.0, "g": [1]}) == {
        "a": "17",
        "b": "false",
        "d": "2.5",
        "e": "x",
        "f": "3",
        "g": "[1]",
    }


def account(connector: Connector = HS) -> Account:
    return Account(connector, {"token": "secret-token"})


def test_a_contact_is_created_and_on_a_409_the_existing_one_is_adopted() -> None:
    m = Upsert(account(), "contacts", {"email": "a@b.co"}, "email", None)
    call, recorded = m.call(5)
    assert (call.method, call.url) == ("POST", "https://api.hubapi.com/crm/v3/objects/contacts")
    assert orjson.loads(call.body or b"") == {"properties": {"email": "a@b.co"}}
    assert call.headers["Authorization"] == "Bearer secret-token"
    assert recorded["headers"]["Authorization"] == "********" and "secret-token" not in str(recorded)
    conflict = {
        "status": "error",
        "message": "Contact already exists. Existing ID: 12345",
        "category": "CONFLICT",
    }
    assert isinstance(m.judge(reply(409, conflict), 0), Next)
    call, _ = m.call(5)
    assert (call.method, call.url) == ("PATCH", "https://api.hubapi.com/crm/v3/objects/contacts/12345")
    done = m.judge(reply(200, {"id": "12345", "properties": {"email": "a@b.co"}}), 0)
    assert isinstance(done, Done) and done.made is not None
    assert (done.made.external_id, done.made.adopted, done.made.created) == ("12345", True, False)


def test_a_linked_object_is_updated_and_a_stale_link_searched_for_then_created() -> None:
    link = Link("p1", "c-hs", "deals", "77", None, 0, 0)
    m = Upsert(account(), "deals", {"dealname": "D", "ref": "p1"}, "ref", link)
    assert m.call(5)[0].method == "PATCH"
    assert isinstance(m.judge(reply(404, {"message": "Object not found."}), 0), Next)
    call, _ = m.call(5)
    assert call.url.endswith("/crm/v3/objects/deals/search")
    filters = orjson.loads(call.body or b"")["filterGroups"][0]["filters"]
    assert filters == [{"propertyName": "ref", "operator": "EQ", "value": "p1"}]
    assert isinstance(m.judge(reply(200, {"total": 0, "results": []}), 0), Next)
    assert m.call(5)[0].method == "POST"
    done = m.judge(reply(201, {"id": "78", "properties": {}}), 0)
    assert isinstance(done, Done) and done.made is not None and done.made.created


def test_hubspot_errors_retry_or_fail_as_they_mean() -> None:
    m = Upsert(account(), "contacts", {"email": "a@b.co"}, "email", None)
    limited = m.judge(reply(429, {"message": "You have reached your secondly limit."}), 0)
    assert isinstance(limited, Retry) and limited.after_ms == 10_000  # no Retry-After: as HubSpot's client
    asked = m.judge(reply(429, {}, **{"retry-after": "3"}), 0)
    assert isinstance(asked, Retry) and asked.after_ms == 3000
    assert isinstance(m.judge(reply(503, b"upstream"), 0), Retry)
    assert isinstance(m.judge(reply(401, {"message": "Authentication credentials not found."}), 0), Fail)
    invalid = m.judge(reply(400, {"message": "Property values were not valid"}), 0)
    assert isinstance(invalid, Fail) and "Property values were not valid" in invalid.error


def test_a_dropbox_upload_overwrites_its_path_then_shares_it() -> None:
    m = Upload(account(BOX), "/Leads/Zoë.json", b"{}", None)
    call, recorded = m.call(5)
    assert call.url == "https://content.dropboxapi.com/2/files/upload"
    arg = call.headers["Dropbox-API-Arg"]
    assert arg.isascii() and orjson.loads(arg) == {"path": "/Leads/Zoë.json", "mode": "overwrite",
                                                    "autorename": False, "mute": True, "strict_conflict": False}  # fmt: skip
    assert call.headers["Content-Type"] == "application/octet-stream" and recorded["body"] == "<2 bytes>"
    meta = {"id": "id:abc", "path_lower": "/leads/zoë.json", "path_display": "/Leads/Zoë.json", "rev": "1"}
    assert isinstance(m.judge(reply(200, meta), 0), Next)
    call, _ = m.call(5)
    assert call.url == "https://api.dropboxapi.com/2/sharing/create_shared_link_with_settings"
    exists = {"error_summary": "shared_link_already_exists/..", "error": {".tag": "shared_link_already_exists",
              "shared_link_already_exists": {".tag": "metadata", "metadata": {"url": "https://db.tt/x?dl=0"}}}}  # fmt: skip
    done = m.judge(reply(409, exists), 0)
    assert isinstance(done, Done) and done.made is not None
    assert (done.made.object_type, done.made.external_id, done.made.url) == (
        "file:/leads/zoë.json",
        "id:abc",
        "https://db.tt/x?dl=0",
    )


def test_a_linked_dropbox_file_is_not_shared_again_and_rate_limits_say_when() -> None:
    link = Link("p1", "c-box", "file:/a.json", "id:abc", "https://db.tt/x", 0, 0)
    m = Upload(account(BOX), "/a.json", b"{}", link)
    done = m.judge(reply(200, {"id": "id:abc", "path_lower": "/a.json"}), 0)
    assert isinstance(done, Done) and done.output["url"] == "https://db.tt/x"
    body = {
        "error_summary": "too_many_requests/..",
        "error": {"reason": {".tag": "too_many_requests"}, "retry_after": 300},
    }
    limited = m.judge(reply(429, body, **{"retry-after": "10"}), 0)
    assert isinstance(limited, Retry) and limited.after_ms == 300_000  # the body's, as Dropbox's client
    assert isinstance(m.judge(reply(401, {"error_summary": "expired_access_token/.."}), 0), Fail)


def test_a_csv_export_is_a_header_and_one_row() -> None:
    text = export_csv(
        {"id": "p1", "state": "NEW", "data": {"score": 5, "tags": ["a"]}, "record": {"email": "x"}}
    )
    assert text.decode().splitlines() == [
        "id,state,data.score,data.tags,record.email",
        'p1,NEW,5,"[""a""]",x',
    ]


def test_credentials_are_sealed_and_any_listed_key_opens_them() -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    sealed = Vault([old]).seal({"token": "secret"})
    assert "secret" not in sealed
    rotated = Vault([new, old])
    assert rotated.open(sealed) == {"token": "secret"}
    resealed = rotated.reseal(sealed)
    assert Vault([new]).open(resealed) == {"token": "secret"}
    with pytest.raises(SecretsUnreadable):
        Vault([new]).open(sealed)
    with pytest.raises(ValueError, match="Fernet key"):
        Vault([b"too short"])


def test_public_connectors_say_which_credentials_are_set_never_what_they_are() -> None:
    shown = HTTP.public()
    assert shown["credentials"] == {"auth": True} and "secret" not in str(shown)
    assert HTTP.auth_headers({"auth": "k-1"}) == {"X-Key": "k-1"}
    assert HTTP.url("/leads") == "https://api.example.com/v2/leads"
    assert BOX.content_url == "https://content.dropboxapi.com"


def test_the_keys_come_from_the_settings_or_are_made_once_into_the_data_folder(tmp_path: Any) -> None:
    from procession.config import Settings

    made = Settings(data_dir=tmp_path).connector_keys()
    assert made == Settings(data_dir=tmp_path).connector_keys() and len(made) == 1
    assert (tmp_path / "connector-keys").stat().st_mode & 0o777 == 0o600
    Vault(made)  # a Fernet key
    first, second = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    assert Settings(data_dir=tmp_path, secret_keys=f"{first}, {second}").connector_keys() == [
        first.encode(),
        second.encode(),
    ]
