"""Export on SQLite and PostgreSQL: every process a list query finds, in its order, across batches, as CSV
and NDJSON."""

from __future__ import annotations

import csv
import io
import threading
import time
from typing import Any

import orjson
import pytest

from procession.domain.errors import Invalid, NotFound
from procession.logs import REQUEST_ID
from procession.services.commands import CreateProcess, ExportProcesses, ListProcesses, ProcedureInput
from procession.services.configuration import define_procedure
from procession.services.exports import FIELDS, export_processes
from procession.services.processes import create_process, delete_process
from procession.services.reads import list_processes
from procession.store.repositories.processes import Processes
from tests.conftest import Team

KINDS = {
    "shortId": "kind",
    "attributes": [
        {"shortId": "name", "type": "string"},
        {"shortId": "score", "type": "integer"},
        {"shortId": "ratio", "type": "number"},
        {"shortId": "vip", "type": "boolean"},
        {"shortId": "tags", "type": "multiStringEnum", "options": ["a", "b", "c"]},
        {"shortId": "shout", "type": "string", "formula": 'data.name + "!"'},
    ],
    "states": [{"shortId": "NEW"}, {"shortId": "DONE"}],
}


def export(team: Team, body: dict[str, Any], fmt: str, batch: int = 3, procedure: str = "kind") -> bytes:
    cmd = ExportProcesses.model_validate(body)
    return b"".join(team.services.run(export_processes, team.caller, procedure, cmd, fmt, batch=batch))


def listed(team: Team, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every process the list finds for ``body``, page after page."""
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        cmd = ListProcesses.model_validate({**body, "limit": 100, "cursor": cursor})
        page, meta = team.services.run(list_processes, team.caller, "kind", cmd, cursor_key=b"k" * 32)
        out += page
        if not (cursor := meta["nextCursor"]):
            return out


@pytest.fixture
def kinds(team: Team) -> list[dict[str, Any]]:
    team.services.run(define_procedure, team.id, ProcedureInput.model_validate(KINDS))
    made = []
    for i in range(11):
        data = {
            "name": f"n{i}",
            "score": i % 4,
            "ratio": i / 2,
            "vip": i % 2 == 0,
            "tags": ["a", "c"][: i % 3],
        }
        made.append(
            team.services.run(
                create_process, team.caller, "kind", CreateProcess.model_validate({"data": data})
            )[1]
        )
    return made


@pytest.mark.parametrize("batch", [1, 3, 11, 100])
@pytest.mark.parametrize(
    "body",
    [
        {},
        {"where": {"score": {">=": 2}}, "sort": [{"field": "score", "dir": "desc"}]},
        {"where": {"name": ["n1", "n3", "n8", "n9"]}, "sort": [{"field": "name"}]},
        {"where": {"score": 9}},
    ],
)
def test_ndjson_is_what_the_list_finds_in_its_order_whatever_the_batch(
    team: Team, kinds: list[dict[str, Any]], body: dict[str, Any], batch: int
) -> None:
    lines = export(team, body, "ndjson", batch).splitlines()
    assert [orjson.loads(line) for line in lines] == listed(team, body)


def test_csv_has_a_stable_header_and_one_row_per_process(team: Team, kinds: list[dict[str, Any]]) -> None:
    rows = list(csv.reader(io.StringIO(export(team, {"sort": [{"field": "name"}]}, "csv").decode())))
    header, body = rows[0], rows[1:]
    data = ["data.name", "data.score", "data.ratio", "data.vip", "data.tags", "derivedData.shout"]
    assert header == FIELDS + data
    assert len(body) == 11 and len(set(r[0] for r in body)) == 11
    first = dict(zip(header, body[0], strict=True))  # n0
    assert first["data.name"] == "n0" and first["derivedData.shout"] == "n0!"
    assert (first["data.vip"], first["isDeleted"], first["data.tags"]) == ("true", "false", "[]")
    assert (first["state"], first["status"], first["nextActionAt"]) == ("NEW", "OPEN", "")
    second = dict(zip(header, body[1], strict=True))  # n1
    assert (second["data.score"], second["data.ratio"], second["data.tags"]) == ("1", "0.5", '["a"]')
    assert second["data.vip"] == "false"


def test_deleted_processes_only_when_asked(team: Team, kinds: list[dict[str, Any]]) -> None:
    gone = kinds[4]["id"]
    team.services.run(delete_process, team.caller, "kind", (gone,))
    ids = [orjson.loads(x)["id"] for x in export(team, {}, "ndjson").splitlines()]
    assert len(ids) == 10 and gone not in ids
    ids = [orjson.loads(x)["id"] for x in export(team, {"includeDeleted": True}, "ndjson").splitlines()]
    assert len(ids) == 11 and gone in ids


def test_an_empty_export_is_the_header_alone(team: Team, kinds: list[dict[str, Any]]) -> None:
    assert export(team, {"where": {"score": 9}}, "ndjson") == b""
    assert export(team, {"where": {"score": 9}}, "csv").decode().count("\r\n") == 1


def test_a_bad_query_or_another_teams_procedure_is_refused_before_anything_is_sent(
    team: Team, team_factory: Any, kinds: list[dict[str, Any]]
) -> None:
    with pytest.raises(Invalid):
        export(team, {"where": {"colour": "red"}}, "csv")
    with pytest.raises(NotFound):
        export(team_factory(), {}, "csv")  # another team: it has no procedure "kind"


def test_each_csv_cell_is_the_lists_value(team: Team, kinds: list[dict[str, Any]]) -> None:
    """The CSV's rows, made from the processes directly, show what the list's views show."""
    rows = list(csv.DictReader(io.StringIO(export(team, {}, "csv").decode())))
    for row, view in zip(rows, listed(team, {}), strict=True):
        shown = {f: view[f] for f in FIELDS}
        shown |= {f"data.{k}": v for k, v in view["data"].items()}
        shown |= {f"derivedData.{k}": v for k, v in view["derivedData"].items()}
        for column, cell in row.items():
            value = shown.get(column)
            if isinstance(value, bool):
                expected = "true" if value else "false"
            elif isinstance(value, list):
                expected = orjson.dumps(value).decode()
            else:
                expected = "" if value is None else str(value)
            assert cell == expected, (column, cell, value)


def test_the_next_batch_is_read_while_one_is_sent_one_ahead_and_no_more(
    team: Team, kinds: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[tuple[str, str | None]] = []  # (thread, the request's id) of each batch read
    search_rows = Processes.search_rows

    def spy(self: Processes, *args: Any, **kwargs: Any) -> Any:
        reads.append((threading.current_thread().name, REQUEST_ID.get()))
        return search_rows(self, *args, **kwargs)

    monkeypatch.setattr(Processes, "search_rows", spy)
    cmd = ExportProcesses.model_validate({})
    request = REQUEST_ID.set("req-1")
    try:
        chunks = team.services.run(export_processes, team.caller, "kind", cmd, "ndjson", batch=3)
    finally:
        REQUEST_ID.reset(request)  # the chunks keep the context they were made in
    assert len(reads) == 1  # the first batch, before anything is sent
    first = next(chunks)
    deadline = time.monotonic() + 10
    while len(reads) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert len(reads) == 2  # the second, read while the first is sent; not the third
    assert reads[1][0].startswith("export") and reads[1][1] == "req-1"
    rest = list(chunks)
    assert len(reads) == 4 and len((first + b"".join(rest)).splitlines()) == 11
