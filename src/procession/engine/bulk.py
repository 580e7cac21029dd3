"""Applying a bulk job, one chunk of entries a task (kind ``bulk.chunk``): every entry gets exactly one
result, in the chunk's transaction. Updates go through the same rules as a single update
(``change_process``) and the same writer (``Processes.save_many``); creates are Create Process per entry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from procession.domain.clock import now_ms
from procession.domain.errors import Invalid, ProcessionError
from procession.domain.process import Event, Process
from procession.engine.batches import counted
from procession.engine.tasks import Kind
from procession.engine.webhooks import job_counted
from procession.services.commands import CreateProcess
from procession.services.common import Caller
from procession.services.jobs import CHUNK, stored_change
from procession.services.processes import change_process, create_in, load_procedure
from procession.store.batch import Write
from procession.store.repositories.jobs import Job
from procession.store.repositories.processes import Saved, Stale
from procession.store.tasks import Task
from procession.store.uow import UnitOfWork


def _result(
    idx: int, status: str, process_id: str | None = None, error: ProcessionError | None = None
) -> dict[str, Any]:
    errors = [e.as_dict() for e in error.errors] if error is not None else None
    return {"b_idx": idx, "b_status": status, "b_process": process_id, "b_error": errors}


@dataclass
class Plan:
    """A chunk of updates worked out: each entry's result, and the processes' writes, built: one ``Saved``
    per run of entries that can be written in one statement (see ``plan_updates``)."""

    job: Job
    procedure_version: int
    results: list[dict[str, Any]]
    saved: list[Saved]
    now: int
    marks: list[Write]  # the entries' results


def plan_updates(uow: UnitOfWork, job: Job, rows: list[tuple[int, Any]], now: int) -> Plan:
    """Set-based: one read of the chunk's processes, the rules per entry, the writes built; nothing written.

    The entries change the processes in memory, in order, and each process is written once, in one statement
    for all, unless an entry gives a process a primary-key value that an earlier entry took from another one:
    one statement writes its rows in any order, and the unique index would meet the value twice. The writes
    are then cut before that entry, and each part is written after the one before it."""
    procedure = load_procedure(uow, job.procedure_id)
    processes, pk_ids = uow.processes.get_many(
        procedure.id,
        sorted({c["id"] for _, c in rows if "id" in c}),
        [c["pk"] for _, c in rows if "pk" in c and "id" not in c],
    )
    results: list[dict[str, Any]] = []
    parts: list[Saved] = []
    written = {pid: p.version for pid, p in processes.items()}  # each one's version once the parts so far are
    read: dict[str, tuple[Process, int]] = {}  # the processes this part changes, by id, with their versions
    events: list[tuple[str, Event]] = []
    keys: dict[str, str | None] = {}  # keys the chunk gave (value -> process id) or freed (value -> None)
    freed: set[str] = set()  # keys this part took from a process

    def cut() -> None:
        nonlocal read, events, freed
        if read:
            parts.append(
                uow.processes.prepare(procedure, list(read.values()), events, actor=job.created_by, now=now)
            )
            written.update((pid, p.version) for pid, (p, _) in read.items())
        read, events, freed = {}, [], set()

    pk = procedure.primary_key
    for idx, stored in rows:
        pid = stored["id"] if "id" in stored else pk_ids.get(stored["pk"])
        process = processes.get(pid) if pid else None
        if process is not None and process.procedure != procedure.id:
            process = None  # another procedure's: not found
        rekeys = pk is not None and pk in stored["data"]  # the entry sets the primary key
        if rekeys and stored["data"][pk] is not None and str(stored["data"][pk]) in freed:
            cut()
        old_key = procedure.key_of(process.data) if rekeys and process is not None else None
        try:
            applied = change_process(
                uow,
                procedure,
                process,
                stored_change(stored),
                ref=stored["id"] if "id" in stored else stored["pk"],
                by="id"
                if "id" in stored or procedure.primary_key_attribute is None
                else procedure.primary_key_attribute.short_id,
                now=now,
                keys=keys,
            )
        except ProcessionError as e:
            results.append(_result(idx, "ERROR", process.id if process is not None else None, e))
            continue
        assert process is not None
        if applied:
            read.setdefault(process.id, (process, written[process.id]))
            events.extend((process.id, e) for e in applied)
            if old_key is not None and old_key != procedure.key_of(process.data):
                freed.add(old_key)
        results.append(_result(idx, "SUCCESS", process.id))
    cut()
    return Plan(job, procedure.version, results, parts, now, uow.jobs.marks(job.id, results))


def _chunk(uow: UnitOfWork, task: Task) -> tuple[Job, list[tuple[int, Any]]] | None:
    """The chunk's job and its pending entries; None when the job was aborted (nothing to apply)."""
    job = uow.jobs.get(task.ref)
    assert job is not None, task.ref
    if job.status == "ABORTED":
        return None
    return job, uow.jobs.pending_entries(job, task.args["first"], task.args["end"])


def apply_chunk(uow: UnitOfWork, task: Task) -> None:
    """Apply the chunk in the unit of work that claimed it, and move its job on."""
    now, found = now_ms(), _chunk(uow, task)
    if found is None:
        uow.jobs.finish_chunk(task.ref, [], now)
        return
    job, rows = found
    if job.kind == "update":
        plan = plan_updates(uow, job, rows, now)
        for saved in plan.saved:
            uow.processes.save_many(saved)
        results = plan.results
    else:
        results = apply_creates(uow, job, rows)
    status = uow.jobs.finish_chunk(job.id, results, now)
    job_counted(uow, job.id, status, now)
    counted(uow, job.id, job.kind, results, status)


def plan_chunk(uow: UnitOfWork, task: Task) -> Plan | None:
    """A chunk of updates worked out ahead on a reader's connection (writing nothing); None for others."""
    found = _chunk(uow, task)
    if found is None or found[0].kind != "update":
        return None
    return plan_updates(uow, *found, now_ms())


def write_chunk(uow: UnitOfWork, task: Task, plan: Plan) -> None:
    """Write what ``plan_chunk`` worked out, if it still holds (its job and procedure as read, every entry a
    success: what refused one may have changed since, and each process at the version read); ``Stale``
    otherwise."""
    standing = uow.jobs.standing(task.ref)  # (job status, procedure version), in one read
    if (
        standing is None
        or standing[0] == "ABORTED"
        or standing[1] != plan.procedure_version
        or any(r["b_status"] != "SUCCESS" for r in plan.results)
    ):
        raise Stale("the chunk's job, its procedure or an entry's outcome may have changed")
    for saved in plan.saved:
        uow.processes.save_many(saved)
    status = uow.jobs.finish_chunk(task.ref, plan.results, plan.now, marks=plan.marks)
    job_counted(uow, task.ref, status, plan.now)
    counted(uow, task.ref, plan.job.kind, plan.results, status)


def apply_creates(uow: UnitOfWork, job: Job, rows: list[tuple[int, Any]]) -> list[dict[str, Any]]:
    """Create Process per entry, each in a savepoint so one bad entry never fails the others."""
    caller = Caller(team_id=job.team_id, role="member", user_id=job.created_by)
    results = []
    for idx, item in rows:
        try:
            with uow.savepoint() as entry:
                created = create_in(entry, caller, job.procedure_id, CreateProcess.model_validate(item))
                entry.commit()
            results.append(_result(idx, "SUCCESS", created["id"]))
        except ProcessionError as e:
            results.append(_result(idx, "ERROR", error=e))
        except IntegrityError:
            results.append(
                _result(idx, "ERROR", error=Invalid.one("conflict", "a conflicting process exists"))
            )
    return results


def give_up(uow: UnitOfWork, task: Task, error: str) -> None:
    """After the last attempt: the chunk's entries end as ERROR, and its job as FAILED."""
    found = _chunk(uow, task)
    error_entry = [{"code": "internal", "message": "the entry could not be applied; see the server log"}]
    results = [
        {"b_idx": idx, "b_status": "ERROR", "b_process": None, "b_error": error_entry}
        for idx, _ in (found[1] if found else [])
    ]
    now = now_ms()
    status = uow.jobs.finish_chunk(task.ref, results, now, failed=True)
    job_counted(uow, task.ref, status, now)
    if found is not None:
        counted(uow, task.ref, found[0].kind, results, status)


BULK_CHUNK = Kind(CHUNK, run=apply_chunk, give_up=give_up, plan=plan_chunk, write=write_chunk)
