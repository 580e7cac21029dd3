"""Export's rows, encoded from the database's rows, against the processes read as processes, on SQLite and
PostgreSQL: generated data (text to quote, numbers of every size, booleans, lists, objects, missing values, a
value of an attribute the procedure no longer has), states, deleted processes, sorts and batch sizes. Each
NDJSON line is byte for byte the process's view (``views.process_view``); each CSV row is what the csv module
writes for the process's cells (the encoder made from ``Process`` objects, kept here as the reference)."""

from __future__ import annotations

import csv
import io
import itertools
from operator import attrgetter
from typing import Any

import orjson
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from procession.domain.procedure import Procedure
from procession.domain.process import Process
from procession.services.commands import CreateProcess, ExportProcesses, ListProcesses, ProcedureInput
from procession.services.configuration import define_procedure
from procession.services.exports import COLUMNS, FIELDS, csv_header, export_processes
from procession.services.processes import create_process, delete_process
from procession.services.reads import list_processes
from procession.services.views import process_view
from procession.store import tables as t
from tests.conftest import Team

TEXTS = st.one_of(
    st.sampled_from(["", "a", "a,b", 'say "hi"', "two\nlines", "cr\r", " spaced ", "é😀", "None", "1"]),
    st.text(max_size=8),
)
NUMBERS = st.one_of(
    st.integers(-3, 3),
    st.integers(-(2**53), 2**53),
    st.floats(-1e20, 1e20, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.5, 1e16, 1.5e-7, 123456789.125]),
)
VALUES = {
    "name": TEXTS,
    "score": st.one_of(st.integers(-3, 3), st.integers(-(2**62), 2**62)),
    "ratio": NUMBERS,
    "vip": st.booleans(),
    "tags": st.lists(st.sampled_from(["a", "b", "c"]), unique=True),
    "extra": st.one_of(TEXTS, st.just({"k": [1, "x", None]}), st.just([1, 2.5, True])),
    "note": TEXTS,
}
PROCESS = st.fixed_dictionaries(
    {},
    optional={
        "data": st.fixed_dictionaries({}, optional=VALUES),
        "state": st.sampled_from(["NEW", "DONE"]),
        "deleted": st.booleans(),
        "stray": st.booleans(),  # a value of an attribute the procedure does not have
    },
)
SORTS = st.sampled_from(
    [
        [],
        [{"field": "score", "dir": "desc"}],
        [{"field": "name"}],
        [{"field": "vip"}, {"field": "ratio", "dir": "desc"}],
        [{"field": "state"}],
    ]
)
_made = itertools.count()


def kinds(n: int) -> dict[str, Any]:
    """A procedure with an attribute of each kind, a derived one among them (not last)."""
    return {
        "shortId": f"view{n}",
        "attributes": [
            {"shortId": "name", "type": "string"},
            {"shortId": "shout", "type": "string", "formula": 'data.name + "!"'},
            {"shortId": "score", "type": "integer"},
            {"shortId": "ratio", "type": "number"},
            {"shortId": "vip", "type": "boolean"},
            {"shortId": "tags", "type": "multiStringEnum", "options": ["a", "b", "c"]},
            {"shortId": "extra", "type": "json"},
            {"shortId": "note", "type": "text"},
        ],
        "states": [{"shortId": "NEW"}, {"shortId": "DONE"}],
    }


def reference_csv(procedure: Procedure, processes: list[Process]) -> bytes:
    """The CSV as it was written from ``Process`` objects: the view's values, the state by its shortId,
    booleans as ``true``/``false``, lists and objects as JSON, by the csv module."""
    fields = attrgetter(*COLUMNS.values())
    states = {s.id: s.short_id for s in procedure.states}

    def cell(value: Any) -> Any:
        if isinstance(value, bool):
            return "true" if value else "false"
        return value if isinstance(value, str | int | float | None) else orjson.dumps(value).decode()

    rows: list[list[Any]] = [csv_header(procedure)]
    for p in processes:
        row = [cell(v) for v in fields(p)]
        row[FIELDS.index("state")] = states.get(p.state) if p.state else None
        values = [(p.derived_data if a.derived else p.data).get(a.id) for a in procedure.attributes]
        rows.append(row + [cell(v) for v in values])
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode()


def make(team: Team, short: str, specs: list[dict[str, Any]]) -> None:
    for spec in specs:
        body = {"data": spec.get("data", {}), **({"state": spec["state"]} if "state" in spec else {})}
        made = team.services.run(create_process, team.caller, short, CreateProcess.model_validate(body))[1]
        if spec.get("deleted"):
            team.services.run(delete_process, team.caller, short, (made["id"],))
        if spec.get("stray"):
            with team.services.engine.begin() as conn:
                c = t.processes.c
                data = conn.scalar(sa.select(c.data).where(c.id == made["id"]))
                stray = {"not-an-attribute": "left over", **data}
                conn.execute(t.processes.update().where(c.id == made["id"]).values(data=stray))


def listed_ids(team: Team, short: str, body: dict[str, Any]) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        cmd = ListProcesses.model_validate({**body, "limit": 100, "cursor": cursor})
        page, meta = team.services.run(list_processes, team.caller, short, cmd, cursor_key=b"k" * 32)
        ids += [p["id"] for p in page]
        if not (cursor := meta["nextCursor"]):
            return ids


def test_export_rows_are_the_views_and_cells_of_the_processes(team: Team) -> None:
    @settings(
        max_examples=20,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        specs=st.lists(PROCESS, min_size=0, max_size=7),
        sort=SORTS,
        batch=st.integers(1, 4),
        include_deleted=st.booleans(),
    )
    def check(
        specs: list[dict[str, Any]], sort: list[dict[str, Any]], batch: int, include_deleted: bool
    ) -> None:
        short = f"view{next(_made)}"
        team.services.run(define_procedure, team.id, ProcedureInput.model_validate(kinds(int(short[4:]))))
        make(team, short, specs)
        body = {"sort": sort, "includeDeleted": include_deleted}
        cmd = ExportProcesses.model_validate(body)
        exported = {
            fmt: b"".join(team.services.run(export_processes, team.caller, short, cmd, fmt, batch=batch))
            for fmt in ("ndjson", "csv")
        }
        lines = exported["ndjson"].splitlines(keepends=True)
        ids = [orjson.loads(line)["id"] for line in lines]
        assert ids == listed_ids(team, short, body)
        with team.services.uows.read(team.id) as uow:
            procedure = uow.procedures.get(short)
            assert procedure is not None
            found = uow.processes.get_all(ids)
        processes = [found[i] for i in ids]
        assert lines == [orjson.dumps(process_view(p, procedure)) + b"\n" for p in processes]
        assert exported["csv"] == reference_csv(procedure, processes)

    check()
