"""Applying one chunk of a bulk job: every entry gets exactly one result, in the chunk's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from procession.domain.errors import Invalid, ProcessionError
from procession.domain.procedure import Procedure
from procession.domain.process import Event, Process
from procession.services.commands import CreateProcess
from procession.services.common import Caller
from procession.services.jobs import stored_change
from procession.services.processes import create_process, load_procedure
from procession.store import batch
from procession.store.jobs import Job
from procession.store.uow import UnitOfWork


def _result(
    idx: int, status: str, process_id: str | None = None, error: ProcessionError | None = None
) -> dict:
    errors = [e.as_dict() for e in error.errors] if error is not None else None
    return {"b_idx": idx, "b_status": status, "b_process": process_id, "b_error": errors}


@dataclass
class Plan:
    """A chunk of updates worked out: each entry's result and the writes that go with them, built."""

    results: list[dict[str, Any]]
    saves: list[batch.Write]  # the processes written back, each only if still at the version read
    saved: int  # how many processes the saves must write
    appends: list[batch.Write]  # their events

    @property
    def refused(self) -> bool:
        """Whether some entry ended as an ERROR."""
        return any(r["b_status"] != "SUCCESS" for r in self.results)


def plan_updates(
    uow: UnitOfWork, procedure: Procedure, job: Job, rows: list[tuple[int, Any]], now: int
) -> Plan:
    """Set-based: one read of the chunk's processes, the domain per entry, the writes built; nothing
    written."""
    processes, pk_ids = uow.processes.get_many(
        procedure.id,
        sorted({c["id"] for _, c in rows if "id" in c}),
        [c["pk"] for _, c in rows if "pk" in c and "id" not in c],
    )
    results: list[dict[str, Any]] = []
    touched: dict[str, Process] = {}  # the processes to write back, by id
    read: dict[str, int] = {}  # their versions as read
    changed: set[str] = set()  # what the saves changed: the columns to write
    events: list[tuple[str, Event]] = []
    keys_taken: set[str] = set()  # keys the chunk moved processes to (the database knows the others)
    for idx, stored in rows:
        pid = stored["id"] if "id" in stored else pk_ids.get(stored["pk"])
        process = processes.get(pid) if pid else None
        if process is None or process.procedure != procedure.id:
            results.append(_result(idx, "ERROR", error=Invalid.one("not_found", "no such process", "id")))
            continue
        if process.is_deleted and stored.get("is_deleted") is not False:
            results.append(_result(idx, "ERROR", pid, Invalid.one("deleted", "the process is deleted", "id")))
            continue
        change = stored_change(stored)
        old_pk, new_pk = procedure.key_of(process.data), procedure.key_of(change.data)
        if new_pk == old_pk:
            new_pk = None  # the key stays
        if new_pk is not None and (new_pk in keys_taken or uow.processes.id_by_pk(procedure.id, new_pk)):
            results.append(
                _result(idx, "ERROR", pid, Invalid.one("duplicate_primary_key", "the primary key is taken"))
            )
            continue
        version = process.version
        try:
            applied = process.apply(procedure, change, now=now)
        except Invalid as e:
            results.append(_result(idx, "ERROR", pid, e))
            continue
        events.extend((process.id, event) for event in applied)
        if applied:
            changed.update(applied[0].payload["changes"])
        read.setdefault(process.id, version)
        touched[process.id] = process
        if new_pk is not None:  # moved: the key the chunk gave it before, if any, is free again
            keys_taken.difference_update({old_pk})
            keys_taken.add(new_pk)
        results.append(_result(idx, "SUCCESS", pid))
    conn = uow.conn
    return Plan(
        results,
        batch.update_processes(conn, procedure, list(touched.values()), changed, read),
        len(touched),
        batch.insert_events(conn, uow.team_id, events, actor=job.created_by, now=now),
    )


class Changed(Exception):
    """A process changed after the plan read it: the plan must not be written."""


def write_updates(uow: UnitOfWork, plan: Plan) -> list[dict[str, Any]]:
    """Write what ``plan`` worked out, each process only if it is still at the version the plan read
    (``Changed`` otherwise); the entries' results."""
    if batch.run(uow.conn, plan.saves) != plan.saved:
        raise Changed(f"{plan.saved} processes planned, some changed since")
    batch.run(uow.conn, plan.appends)
    return plan.results


def apply_updates(
    uow: UnitOfWork, procedure: Procedure, job: Job, rows: list[tuple[int, Any]], now: int
) -> list[dict[str, Any]]:
    """Work the chunk out and write it, in the unit of work that holds its lock."""
    return write_updates(uow, plan_updates(uow, procedure, job, rows, now))


def apply_creates(
    uow: UnitOfWork, procedure: Procedure, job: Job, rows: list[tuple[int, Any]], now: int
) -> list[dict[str, Any]]:
    """Create Process per entry, each in a savepoint so one bad entry never fails the others."""
    caller = Caller(team_id=job.team_id, role="member", user_id=job.created_by)
    results = []
    for idx, item in rows:
        try:
            with UnitOfWork(uow.engine, uow.team_id, within=uow.conn) as entry:  # a savepoint
                created = create_process(entry, caller, procedure.id, CreateProcess.model_validate(item))
                entry.commit()
            results.append(_result(idx, "SUCCESS", created["id"]))
        except ProcessionError as e:
            results.append(_result(idx, "ERROR", error=e))
        except IntegrityError:
            results.append(
                _result(idx, "ERROR", error=Invalid.one("conflict", "a conflicting process exists"))
            )
    return results


def apply_chunk(uow: UnitOfWork, job: Job, rows: list[tuple[int, Any]], now: int) -> list[dict[str, Any]]:
    procedure = load_procedure(uow, job.procedure_id)
    apply = apply_updates if job.kind == "update" else apply_creates
    return apply(uow, procedure, job, rows, now)
