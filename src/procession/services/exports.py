"""Export: every process a list query finds, as CSV or NDJSON, read in keyset batches.

The query (``where``, ``sort``, ``includeDeleted``) is the list's, parsed by the same parser and run as the
same search statement (``Processes.search_rows``, the driver's rows: no ``Process`` is built), a batch at a
time, each batch after the last row of the one before it by its sort values. The next batch is read and
encoded on a thread of its own while one is sent: the server holds two batches, however many rows there are.
Each row is encoded straight from its columns; an NDJSON line is the bytes of the process's view
(``views.process_view``). Each batch is a short read of its own (no transaction held for the whole export), so a process changed during the export is
exported at most once, as it was when its batch was read, and one whose sort values moved ahead of the
export's position may be missed; the rows that do not change are each exported exactly once.
"""

from __future__ import annotations

import contextvars
import csv
import io
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from operator import itemgetter
from typing import Any

import orjson

from procession.domain.procedure import Procedure
from procession.domain.process import Process
from procession.domain.query import Parser
from procession.services.commands import ExportProcesses
from procession.services.common import Caller
from procession.services.processes import load_procedure
from procession.store.search import with_tiebreak
from procession.store.uow import Lookups, UnitsOfWork

BATCH = 5000  # processes read per statement
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "ndjson": "application/x-ndjson"}
# the CSV's first columns: the process's fields as its JSON view names them (``views.process_view``), in its
# order, but its data; each with the attribute of ``Process`` it shows
COLUMNS = {
    "id": "id", "team": "team", "procedure": "procedure", "createdBy": "created_by",
    "assignedTo": "assigned_to", "belongsTo": "belongs_to", "entity": "entity", "record": "record",
    "status": "status", "state": "state", "nextActionAt": "next_action_at", "completedAt": "completed_at",
    "primaryBooking": "primary_booking", "cancelledAt": "cancelled_at", "parentProcedure": "parent_procedure",
    "parentProcess": "parent_process", "firstAssignedTo": "first_assigned_to",
    "firstAssignedAt": "first_assigned_at", "lastAssignedAt": "last_assigned_at", "createdAt": "created_at",
    "updatedAt": "updated_at", "isDeleted": "is_deleted", "version": "version",
}  # fmt: skip
FIELDS = list(COLUMNS)
# the NDJSON line's fields, as ``views.process_view`` shows them and in its order; each with its column
VIEW = {
    "id": "id", "team": "team", "procedure": "procedure", "createdBy": "created_by",
    "assignedTo": "assigned_to", "belongsTo": "belongs_to", "entity": "entity", "record": "record",
    "status": "status", "state": "state", "data": "data", "derivedData": "derived_data",
    "nextActionAt": "next_action_at", "completedAt": "completed_at", "primaryBooking": "primary_booking",
    "cancelledAt": "cancelled_at", "parentProcedure": "parent_procedure", "parentProcess": "parent_process",
    "firstAssignedTo": "first_assigned_to", "firstAssignedAt": "first_assigned_at",
    "lastAssignedAt": "last_assigned_at", "createdAt": "created_at", "updatedAt": "updated_at",
    "isDeleted": "is_deleted", "version": "version",
}  # fmt: skip
# a row of ``Processes.search_rows``: the columns of ``Process`` (its fields' names, by position), then the
# sort values
AT = {f.name: i for i, f in enumerate(fields(Process))}
WIDTH = len(AT)
# written by the csv module as they are (None as an empty cell, a number as ``str`` gives it)
_PLAIN = frozenset((str, int, float, type(None)))


def csv_header(procedure: Procedure) -> list[str]:
    """The CSV's columns: ``FIELDS``, then ``data.<shortId>`` for each attribute and ``derivedData.<shortId>``
    for each derived one, in the procedure's order of attributes."""
    return FIELDS + [f"{'derivedData' if a.derived else 'data'}.{a.short_id}" for a in procedure.attributes]


def _cell(value: Any) -> Any:
    """A value as a CSV cell: booleans as ``true``/``false``, lists and objects as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if type(value) in _PLAIN else orjson.dumps(value).decode()


def export_processes(
    uows: UnitsOfWork,
    caller: Caller,
    procedure_ref: str,
    cmd: ExportProcesses,
    fmt: str,
    *,
    batch: int = BATCH,
) -> Iterator[bytes]:
    """The export's bytes in chunks (a batch each), as ``fmt`` (``csv`` or ``ndjson``). The query is checked
    and its first batch read before this returns, so that a bad query, or a first statement past its deadline,
    is an error reply rather than a cut-short export."""
    with uows.read(caller.team_id) as uow:
        procedure = load_procedure(uow, procedure_ref)
        parser = Parser(procedure, Lookups(uow))
        where = parser.where(cmd.where)
        keys = with_tiebreak(parser.sort(cmd.sort))

    def read(after: list[Any] | None) -> tuple[list[tuple[Any, ...]], list[Any] | None]:
        """A batch after ``after``, and the sort values to read the next one after (None: it was the last)."""
        with uows.read(caller.team_id) as uow:
            rows = uow.processes.search_rows(
                procedure.id,
                where=where,
                keys=keys,
                after=after,
                limit=batch,
                include_deleted=cmd.includeDeleted,
            )
        more = len(rows) > batch
        return rows[:batch], list(rows[batch - 1][WIDTH:]) if more else None

    encode = _csv(procedure) if fmt == "csv" else _ndjson(procedure)
    rows, after = read(None)
    context = contextvars.copy_context()  # the request's, whichever thread asks for the chunks

    def chunk(after: list[Any]) -> tuple[bytes, list[Any] | None]:
        rows, after_it = read(after)
        return encode(rows, header=False), after_it

    def chunks(rows: list[tuple[Any, ...]], after: list[Any] | None) -> Iterator[bytes]:
        # the next chunk is read and encoded while this one is sent, one ahead and no more, in the request's
        # context (its id in the log); an export stopped early leaves that chunk to end on its own
        ahead = ThreadPoolExecutor(1, thread_name_prefix="export")
        try:
            coming = ahead.submit(context.run, chunk, after) if after is not None else None
            yield encode(rows, header=True)
            while coming is not None:
                data, after = coming.result()
                coming = ahead.submit(context.run, chunk, after) if after is not None else None
                yield data
        finally:
            ahead.shutdown(wait=False, cancel_futures=True)

    return chunks(rows, after)


def _short(procedure: Procedure) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """``Procedure.to_short``, with the names looked up once."""
    names = {attribute_id: a.short_id for attribute_id, a in procedure.by_id.items()}
    get = names.__getitem__

    def short(data: dict[str, Any]) -> dict[str, Any]:
        try:
            return dict(zip(map(get, data), data.values(), strict=True))
        except KeyError:  # a value of an attribute the procedure no longer has: left out
            return {names[k]: v for k, v in data.items() if k in names}

    return short


def _ndjson(procedure: Procedure) -> Callable[..., bytes]:
    """Lines made straight from the rows, each the bytes of the process's view (``views.process_view``)."""
    names = list(VIEW)
    pick = itemgetter(*(AT[name] for name in VIEW.values()))
    states = {s.id: s.short_id for s in procedure.states}
    short = _short(procedure)
    loads, dumps, newline = orjson.loads, orjson.dumps, orjson.OPT_APPEND_NEWLINE

    def encode(rows: list[tuple[Any, ...]], *, header: bool) -> bytes:
        lines = []
        for row in rows:
            view = dict(zip(names, pick(row), strict=True))
            view["state"] = states.get(view["state"])
            view["data"] = short(loads(view["data"]))
            view["derivedData"] = short(loads(view["derivedData"]))
            view["isDeleted"] = bool(view["isDeleted"])
            lines.append(dumps(view, option=newline))
        return b"".join(lines)

    return encode


def _csv(procedure: Procedure) -> Callable[..., bytes]:
    """Rows made straight from the database's (a million views would cost more than the rows themselves): the
    view's values, the state by its shortId, booleans as ``true``/``false``, lists and objects as JSON."""
    pick = itemgetter(*(AT[name] for name in COLUMNS.values()))
    state_at, deleted_at = FIELDS.index("state"), FIELDS.index("isDeleted")
    data_at, derived_at = AT["data"], AT["derived_data"]
    states = {s.id: s.short_id for s in procedure.states}
    own_ids = [a.id for a in procedure.attributes if not a.derived]
    derived_ids = [a.id for a in procedure.attributes if a.derived]
    read_order = [*own_ids, *derived_ids]  # the values as read, and where each goes in the header's order
    order = [read_order.index(a.id) for a in procedure.attributes]
    reorder = order != sorted(order)
    width = len(FIELDS) + len(order)
    loads = orjson.loads

    def encode(rows: list[tuple[Any, ...]], *, header: bool) -> bytes:
        lines = [_csv_line(csv_header(procedure))] if header else []
        for row in rows:
            own, derived = loads(row[data_at]), loads(row[derived_at])
            values = [*map(own.get, own_ids), *map(derived.get, derived_ids)]
            if reorder:
                values = [values[i] for i in order]
            if not _PLAIN.issuperset(map(type, values)):
                values = [_cell(v) for v in values]
            cells = [*pick(row), *values]
            cells[state_at] = states.get(cells[state_at])
            cells[deleted_at] = "true" if cells[deleted_at] else "false"
            line = ",".join(map(str, ["" if v is None else v for v in cells]))
            if line.count(",") != width - 1 or '"' in line or "\n" in line or "\r" in line:
                line = _csv_line(cells)  # a cell to quote
            lines.append(line)
        lines.append("")
        return "\r\n".join(lines).encode()

    return encode


def _csv_line(cells: list[Any]) -> str:
    """One row as the csv module writes it (quoted where a cell holds a comma, a quote or a line break)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(cells)
    return out.getvalue()
