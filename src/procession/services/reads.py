"""Process reads: one process, a list/search page, a process's history."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.exc import OperationalError

from procession.domain.clock import now_ms
from procession.domain.errors import NotFound, Unavailable
from procession.domain.procedure import Procedure
from procession.domain.process import Process
from procession.domain.query import Both, Compare, Either, Field, SortKey
from procession.domain.requirements import GATE, STATUSES
from procession.services.commands import ListProcesses
from procession.services.common import Caller
from procession.services.processes import find_process, load_procedure, query_parser, record_data
from procession.services.views import FIELD_NAMES, process_view
from procession.store.db import timed_out
from procession.store.search import decode_cursor, encode_cursor, signature, with_tiebreak
from procession.store.uow import UnitsOfWork

BY_KEY = SortKey(Field("pk_value", nullable=False), False)  # the primary key's value, as stored


def get_process(
    uows: UnitsOfWork, caller: Caller, procedure_ref: str, ref: tuple[str, ...], *, external: bool = True
) -> dict[str, Any]:
    with uows.read(caller.team_id) as uow:
        procedure = load_procedure(uow, procedure_ref)
        return process_view(find_process(uow, procedure, ref), procedure, external=external)


def get_process_by_id(uows: UnitsOfWork, caller: Caller, process_id: str) -> dict[str, Any]:
    """The internal view (ids throughout) of any process of the team."""
    with uows.read(caller.team_id) as uow:
        process = uow.processes.get(process_id)
        procedure = uow.procedures.get(process.procedure) if process and not process.is_deleted else None
        if process is None or procedure is None:
            raise NotFound(f"no process {process_id!r}")
        return process_view(process, procedure, external=False)


def list_processes(
    uows: UnitsOfWork,
    caller: Caller,
    procedure_ref: str,
    cmd: ListProcesses,
    *,
    cursor_key: bytes,
    external: bool = True,
    key_prefix: str | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One page: ``where`` filtered, sorted (stable: ``id`` breaks ties), from ``cursor`` then ``skip``; given
    ``key_prefix``, only the processes whose primary-key value starts with it, in the order of that value.
    Cursors are signed with ``cursor_key`` (``Settings.secret``)."""
    with uows.read(caller.team_id) as uow:
        procedure = load_procedure(uow, procedure_ref)
        parser = query_parser(uow, procedure)
        where = parser.where(cmd.where)
        # a key's first characters are looked up on the key's index, in the key's order (never sorted after)
        keys = with_tiebreak(parser.sort(cmd.sort) if key_prefix is None else [BY_KEY])
        scope = (procedure.id, where, cmd.includeDeleted, *([cmd.q] if cmd.q is not None else []))
        with _deadline(uows, procedure, where, keys):
            page, meta = paged(
                cmd,
                keys,
                scope if key_prefix is None else (*scope, key_prefix),
                cursor_key,
                lambda after: uow.processes.search(
                    procedure.id,
                    where=where,
                    keys=keys,
                    after=after,
                    skip=cmd.skip,
                    limit=cmd.limit,
                    include_deleted=cmd.includeDeleted,
                    key_prefix=key_prefix,
                    q=cmd.q,
                ),
            )
        return [process_view(p, procedure, external=external) for p in page], meta


def paged(
    cmd: Any,
    keys: list[SortKey],
    scope: Any,
    cursor_key: bytes,
    fetch: Callable[[list[Any] | None], list[Any]],
) -> tuple[list[Any], dict[str, Any]]:
    """One page of a list (processes, records) sorted by ``keys`` (made total): ``fetch(after)`` gives up to
    ``cmd.limit`` + 1 (item, sort values) after the cursor's values; ``_meta`` says whether there are more
    and signs the cursor to the next page, bound to ``scope`` (what the list is of and its filter)."""
    sig = signature(keys, scope)
    rows = fetch(decode_cursor(cursor_key, cmd.cursor, sig, keys) if cmd.cursor else None)
    page, more = rows[: cmd.limit], len(rows) > cmd.limit
    meta = {
        "skip": cmd.skip,
        "limit": cmd.limit,
        "hasMore": more,
        "nextCursor": encode_cursor(cursor_key, sig, page[-1][1]) if more else None,
    }
    return [item for item, _ in page], meta


@contextmanager
def _deadline(uows: UnitsOfWork, procedure: Procedure, where: Any, keys: list[SortKey]) -> Iterator[None]:
    """A query stopped at the deadline is ``statement_timeout`` (503), naming the attributes it filtered or
    sorted on that have no index, if any: marking them ``indexed`` makes such a query fast."""
    try:
        yield
    except OperationalError as e:
        if not timed_out(e):
            raise
        ids = dict.fromkeys([*_attribute_ids(where), *(k.field.key for k in keys if k.field.key)])
        slow = [a.short_id for i in ids if (a := procedure.by_id.get(i)) is not None and not a.indexed]
        hint = (
            f": it filters or sorts on {', '.join(slow)}, which {'has' if len(slow) == 1 else 'have'} no "
            f"index; mark {'it' if len(slow) == 1 else 'them'} indexed in {procedure.short_id}'s definition "
            "(attributes[].indexed), or narrow the query"
            if slow
            else ": narrow the query, or retry later"
        )
        raise Unavailable(
            f"the list query ran past the {uows.deadline_ms or 0:,} ms deadline "
            f"(PROCESSION_STATEMENT_TIMEOUT_MS) and was stopped{hint}",
            field="where"
            if slow and set(slow) & set(_short_ids(procedure, where))
            else "sort"
            if slow
            else None,
            code="statement_timeout",
        ) from None


def _attribute_ids(node: Any) -> list[str]:
    if isinstance(node, Both | Either):
        return [i for part in node.parts for i in _attribute_ids(part)]
    return [node.field.key] if isinstance(node, Compare) and node.field.key else []


def _short_ids(procedure: Procedure, where: Any) -> list[str]:
    return [a.short_id for i in _attribute_ids(where) if (a := procedure.by_id.get(i)) is not None]


def count_processes(
    uows: UnitsOfWork, caller: Caller, procedure_ref: str, where: dict[str, Any], *, cap: int = 10_000
) -> tuple[int, bool]:
    """How many processes (not deleted) ``where`` finds: (count, whether there are more than ``cap``)."""
    with uows.read(caller.team_id) as uow:
        procedure = load_procedure(uow, procedure_ref)
        parsed = query_parser(uow, procedure).where(where)
        with _deadline(uows, procedure, parsed, []):
            found = uow.processes.count(procedure.id, where=parsed, cap=cap)
    return min(found, cap), found > cap


def process_history(
    uows: UnitsOfWork,
    caller: Caller,
    procedure_ref: str,
    ref: tuple[str, ...],
    *,
    after: int = 0,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The process's events in commit order: who, when, what changed (old and new values, by shortId)."""
    with uows.read(caller.team_id) as uow:
        procedure = load_procedure(uow, procedure_ref)
        process = find_process(uow, procedure, ref, include_deleted=True)
        records = uow.events.for_process(process.id, after=after, limit=limit + 1)
        users = {u["id"]: u["username"] for u in uow.users.list()}

        def show(name: str, value: Any) -> Any:
            return procedure.state_short(value) if name == "state" else value

        out = []
        for e in records[:limit]:
            item: dict[str, Any] = {
                "id": e.id,
                "type": e.type,
                "actor": e.actor,
                "actorUsername": users.get(e.actor),
                "createdAt": e.created_at,
            }
            if "snapshot" in e.payload:
                item["process"] = process_view(Process(**e.payload["snapshot"]), procedure)
            if "changes" in e.payload:
                item["changes"] = {
                    _field_name(procedure, k): {"old": show(k, old), "new": show(k, new)}
                    for k, (old, new) in e.payload["changes"].items()
                }
            if "from" in e.payload:
                kind = e.type.removeprefix("process.").removesuffix("_changed")
                item["from"], item["to"] = show(kind, e.payload["from"]), show(kind, e.payload["to"])
            out.append(item)
        more = len(records) > limit
        return out, {"hasMore": more, "nextAfter": out[-1]["id"] if more else None}


def _field_name(procedure: Any, key: str) -> str:
    if "." in key:
        column, attr_id = key.split(".", 1)
        attr = procedure.by_id.get(attr_id)
        return f"{FIELD_NAMES.get(column, column)}.{attr.short_id if attr else attr_id}"
    return FIELD_NAMES.get(key, key)


def process_requirements(
    uows: UnitsOfWork, caller: Caller, procedure_ref: str, ref: tuple[str, ...]
) -> dict[str, Any]:
    """Which of its procedure's requirements the process meets now, and, for each state and status, the gates
    that would refuse a move there (``domain.requirements``)."""
    with uows.read(caller.team_id) as uow:
        procedure = load_procedure(uow, procedure_ref)
        process = find_process(uow, procedure, ref)
        record = record_data(uow, procedure, process.record)
    variables = {"process": process.variables(procedure) | {"record": record or {}}, "now": now_ms()}
    short = procedure.state_short
    met = {r.name: r.holds(variables) for r in procedure.requirements}
    gates = [r for r in procedure.requirements if r.use == GATE]
    return {
        "requirements": [
            r.stored() | {"state": short(r.state), "met": met[r.name], "reads": r.reads}
            for r in procedure.requirements
        ],
        "blockedStates": {
            s.short_id: names
            for s in procedure.states
            if (names := [g.name for g in gates if g.state == s.id and not met[g.name]])
        },
        "blockedStatuses": {
            status: names
            for status in STATUSES
            if (names := [g.name for g in gates if g.status == status and not met[g.name]])
        },
        "allowedStates": [
            s.short_id
            for s in procedure.states
            if s.id != process.state and procedure.can_move(process.state, s.id)
        ],
    }
