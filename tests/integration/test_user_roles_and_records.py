"""On SQLite and PostgreSQL: a user's role changed and a user removed (signed out, keys revoked, out of their
pods, what they did keeping their id), never the team's last admin; a record's data changed with its key
kept unique and its values checked."""

from __future__ import annotations

import pytest

from procession.domain.errors import Conflict, Invalid, NotFound, Unauthorized
from procession.services.accounts import remove_user, session_user, set_password, set_role
from procession.services.commands import CreateProcess, PodInput, UpdateRecord, UserInput
from procession.services.configuration import add_pod, add_user, team_config
from procession.services.processes import create_process
from procession.services.reads import process_history
from procession.services.records import get_record, update_record
from procession.services.teams import authenticate, create_key
from tests.conftest import Team


def test_the_last_admin_is_never_demoted_nor_removed(team: Team) -> None:
    for attempt in (lambda: set_role(team.services.uows, team.id, "admin", "member"),
                    lambda: remove_user(team.services.uows, team.id, "admin")):  # fmt: skip
        with pytest.raises(Conflict) as refused:
            attempt()
        assert refused.value.code == "last_admin"
    assert team.services.run(set_role, team.id, "admin", "admin")["role"] == "admin"  # staying one is fine
    team.services.run(set_role, team.id, "shane.warne", "admin")
    assert team.services.run(set_role, team.id, "admin", "member")["role"] == "member"
    with pytest.raises(Conflict):
        team.services.run(remove_user, team.id, "shane.warne")  # now the only admin
    with pytest.raises(Invalid):
        team.services.run(set_role, team.id, "shane.warne", "owner")
    with pytest.raises(NotFound):
        team.services.run(set_role, team.id, "nobody", "member")


def test_a_removed_user_is_signed_out_their_keys_revoked_and_their_name_free(team: Team) -> None:
    services = team.services
    user = services.run(add_user, team.id, UserInput(username="temp.worker", name="Temp"))
    services.run(set_password, team.id, "temp.worker", "temp password 1")
    key = services.run(create_key, team.id, role="member", username="temp.worker")
    services.run(add_pod, team.id, PodInput(shortId="temps", members=["temp.worker", "shane.warne"]))
    assert authenticate(services.engine, key).user_id == user["id"]
    caller = authenticate(services.engine, key)
    _, made = services.run(create_process, caller, "ticket", CreateProcess(data={"subject": "by temp"}))
    services.run(remove_user, team.id, "temp.worker")
    with pytest.raises(Unauthorized):
        authenticate(services.engine, key)
    with pytest.raises(Unauthorized):
        services.run(session_user, team.id, user["id"])
    config = services.run(team_config, team.id)
    assert "temp.worker" not in [u["username"] for u in config["users"]]
    temps = next(p for p in config["pods"] if p["shortId"] == "temps")
    assert user["id"] not in temps["members"] and len(temps["members"]) == 1
    events, _ = services.run(process_history, team.caller, "ticket", (made["id"],))
    assert events[0]["actor"] == user["id"]  # what they did keeps their id
    services.run(add_user, team.id, UserInput(username="temp.worker"))  # the name is free again


def test_a_records_data_changes_with_its_key_kept_unique(team: Team) -> None:
    services = team.services
    _, first = services.run(
        create_process, team.caller, "ticket",
        CreateProcess.model_validate({"record": {"data": {"phone_number": "7701214822"}}}),
    )  # fmt: skip
    services.run(
        create_process, team.caller, "ticket",
        CreateProcess.model_validate({"record": {"data": {"phone_number": "7701214823"}}}),
    )  # fmt: skip
    record_id = first["record"]
    entity = services.run(get_record, team.caller, record_id)["entity"]["id"]

    def edit(ref: str, data: dict) -> dict:
        return services.run(update_record, team.caller, entity, (ref,), UpdateRecord(data=data))

    with pytest.raises(Invalid) as bad:
        edit(record_id, {"email": "not an email", "nope": 1})
    assert {e.field for e in bad.value.errors} == {"data.email", "data.nope"}
    with pytest.raises(Invalid) as cleared:
        edit(record_id, {"phone_number": None})
    assert [e.field for e in cleared.value.errors] == ["data.phone_number"]
    with pytest.raises(Conflict):
        edit(record_id, {"phone_number": "7701214823"})
    changed = edit(record_id, {"phone_number": "7701214899", "email": "a@b.co"})
    assert changed["data"] == services.run(get_record, team.caller, record_id)["data"]
    assert changed["data"]["email"] == "a@b.co"
    _, again = services.run(  # the new key finds the same record
        create_process, team.caller, "ticket",
        CreateProcess.model_validate({"record": {"data": {"phone_number": "7701214899"}}}),
    )  # fmt: skip
    assert again["record"] == record_id
    with pytest.raises(NotFound):
        edit("no-such-record", {})
