"""A list of processes narrowed to those whose primary-key value starts with some text (the console's search
box), on both databases: a range of the key's index, read in the key's order; the prefix itself decides."""

from __future__ import annotations

from procession.services.commands import CreateProcess, ListProcesses
from procession.services.processes import create_process
from procession.services.reads import list_processes
from tests.conftest import Team


def keys(team: Team, prefix: str, **sort: str) -> list[str]:
    cmd = ListProcesses(limit=100, sort=[sort] if sort else [])
    page, _ = team.services.run(
        list_processes, team.caller, "ticket", cmd, cursor_key=team.services.cursor_key, key_prefix=prefix
    )
    return [p["data"]["ticket_id"] for p in page]


def test_only_the_keys_that_start_with_the_text(team: Team) -> None:
    for _ in range(12):
        team.services.run(create_process, team.caller, "ticket", CreateProcess.model_validate({}))
    assert sorted(keys(team, "TKT-1")) == ["TKT-1", "TKT-10", "TKT-11", "TKT-12"]
    in_key_order = ["TKT-1", "TKT-10", "TKT-11", "TKT-12"]  # whatever the sort asked: the key's index
    assert keys(team, "TKT-1") == keys(team, "TKT-1", field="createdAt", dir="desc") == in_key_order
    assert len(keys(team, "TKT-")) == 12 and keys(team, "TKT-13") == [] and keys(team, "tkt-1") == []
    assert keys(team, "TKT-1%") == [] and keys(team, "TKT-_") == []  # no wildcard: the text as it is
