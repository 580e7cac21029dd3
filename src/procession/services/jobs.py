"""Bulk jobs: submit (validate every item at once, store it all durably), read, page entries, abort.

Entry statuses: INVALID (refused at submission), NOT_STARTED, SUCCESS, ERROR (refused when applied).
Job statuses: NOT_STARTED, IN_PROGRESS, COMPLETED, FAILED, ABORTED.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from functools import partial
from typing import Any

from pydantic import ValidationError

from procession import metrics
from procession.domain.clock import new_id, now_ms
from procession.domain.errors import FieldError, Invalid, NotFound
from procession.domain.procedure import Procedure
from procession.domain.process import UNSET, ProcessChange
from procession.engine.webhooks import job_finished
from procession.services.commands import CreateProcess, UpdateProcess
from procession.services.common import Caller
from procession.services.idempotency import Once, run_once
from procession.services.processes import load_procedure, resolve_change
from procession.store.repositories.jobs import Job
from procession.store.statement import json_text
from procession.store.tasks import NewTask
from procession.store.uow import Lookups, UnitOfWork, UnitsOfWork
from procession.tuning import gc_paused

CHUNK_SIZE = 1000  # entries applied per transaction
ENTRY_BATCH = 5000  # entries stored per statement at submission
MAX_ITEMS = 100_000  # items per bulk request
CHUNK = "bulk.chunk"  # the kind of task that applies a chunk (``services.bulk``)
UPDATE_FIELDS = frozenset(UpdateProcess.model_fields) - {"version", "primaryBooking"}
CHANGE_FIELDS = (
    "state",
    "status",
    "assigned_to",
    "belongs_to",
    "next_action_at",
    "parent_process",
    "is_deleted",
)


def _errors(e: ValidationError) -> list[dict[str, Any]]:
    return [
        {
            "code": "invalid",
            "message": f"{'.'.join(map(str, err['loc'])) or 'item'}: {err['msg']}",
            "field": ".".join(map(str, err["loc"])) or None,
        }
        for err in e.errors()
    ]


def parse_update(procedure: Procedure, item: Any, uow: UnitOfWork, lookups: Lookups) -> dict[str, Any]:
    """One bulk-update item (flat, or with its fields under ``update``) -> its stored change; ``Invalid``."""
    if not isinstance(item, dict):
        raise Invalid.one("invalid_item", "each item must be an object")
    pk = procedure.primary_key_attribute
    ident = {k: item[k] for k in ("id", pk.short_id if pk else "id") if k in item}
    fields = {k: v for k, v in item.items() if k not in ident}
    if "update" in fields:
        if set(fields) != {"update"} or not isinstance(fields["update"], dict):
            raise Invalid.one(
                "invalid_item", "send the fields either at the top level or under update, not both", "update"
            )
        fields = fields["update"]
    if not ident:
        raise Invalid.one(
            "missing_identifier", f"identify the process by id{' or ' + pk.short_id if pk else ''}", "id"
        )
    if not UPDATE_FIELDS.issuperset(fields):
        raise Invalid(
            [
                FieldError("unknown_field", f"{k} is not a field bulk updates can write", k)
                for k in sorted(set(fields) - UPDATE_FIELDS)
            ]
        )
    try:
        cmd = UpdateProcess.model_validate(fields)
    except ValidationError as e:
        raise Invalid([FieldError(**err) for err in _errors(e)]) from None
    change = resolve_change(uow, procedure, cmd, lookups)
    if cmd.isDeleted is not None:
        change.is_deleted = cmd.isDeleted
    stored: dict[str, Any] = {"data": change.data}
    for name in CHANGE_FIELDS:
        value = getattr(change, name)
        if value is not UNSET:
            stored[name] = value
    if "id" in ident and not isinstance(ident["id"], str):
        raise Invalid.one("invalid_identifier", "id must be a string", "id")
    if pk is not None and pk.short_id in ident:
        try:
            stored["pk"] = str(pk.normalise(ident[pk.short_id], lookups))
        except ValueError as e:
            raise Invalid.one("invalid_identifier", f"{pk.short_id} {e}", pk.short_id) from None
        if "id" in ident and uow.processes.id_by_pk(procedure.id, stored["pk"]) not in (None, ident["id"]):
            raise Invalid.one(
                "conflicting_identifiers", f"id and {pk.short_id} name different processes", "id"
            )
    if "id" in ident:
        stored["id"] = ident["id"]
    return stored


def stored_change(stored: dict[str, Any]) -> ProcessChange:
    """The domain change a stored entry asks for."""
    return ProcessChange(data=stored["data"], **{k: stored[k] for k in CHANGE_FIELDS if k in stored})


def parse_create(procedure: Procedure, item: Any, uow: UnitOfWork, lookups: Lookups) -> dict[str, Any]:
    """One bulk-create item, checked as Create Process would check it (references are checked when applied)."""
    try:
        cmd = CreateProcess.model_validate(item)
    except ValidationError as e:
        raise Invalid([FieldError(**err) for err in _errors(e)]) from None
    resolve_change(uow, procedure, cmd, lookups)
    return {}


def submit_job(
    uows: UnitsOfWork,
    caller: Caller,
    procedure_ref: str,
    items: Iterable[Any],
    *,
    kind: str,
    once: Once | None = None,
) -> tuple[int, dict[str, Any]]:
    """A bulk job (``kind`` update or create), stored whole in a transaction of its own: (202, the job's
    view); a replayed ``once`` key gets the first answer."""
    return run_once(
        uows, caller.team_id, once, 202, lambda uow: _submit(uow, caller, procedure_ref, items, kind=kind)
    )


@gc_paused()  # a job's many items, changes and names are in no cycle: reference counting frees them
def _submit(
    uow: UnitOfWork, caller: Caller, procedure_ref: str, items: Iterable[Any], *, kind: str
) -> dict[str, Any]:
    """Validate every item and store the job, its entries and its chunks' tasks; the job's view. ``items``
    may be a stream: they are taken, checked and stored a batch at a time, so memory holds one batch of
    them, not the whole payload. 1 to ``MAX_ITEMS`` items, or ``Invalid`` and nothing stored."""
    now = now_ms()
    procedure = load_procedure(uow, procedure_ref)
    lookups, parse = Lookups(uow), parse_update if kind == "update" else parse_create
    job_id = new_id()
    uow.jobs.add(
        {
            "id": job_id,
            "procedure_id": procedure.id,
            "kind": kind,
            "status": "NOT_STARTED",
            "total": 0,  # counted as the items come
            "chunks_total": 0,
            "chunks_done": 0,
            "failed": False,
            "created_by": caller.user_id,
            "created_at": now,
        }
    )
    # per valid update entry: the process id or primary-key value that names it, and which of the two
    names: list[str] = []
    by_key = bytearray()
    moves_keys = False  # some entry changes a primary key: names are no guide to order then
    bounds: list[list[int]] = []  # per chunk of CHUNK_SIZE valid entries: its first and last index
    stream, total, valid = iter(items), 0, 0
    with uow.pipelined() as settle:  # a batch's entries are stored while the next batch is checked
        while batch := list(itertools.islice(stream, ENTRY_BATCH)):
            if total + len(batch) > MAX_ITEMS:
                raise Invalid.one("too_many", f"send at most {MAX_ITEMS:,} processes at a time", "processes")
            entries: list[tuple[int, str, str, Any, Any]] = []
            for i, item in enumerate(batch, start=total):
                stored = json_text(item)  # kept as sent, but PostgreSQL stores no NUL character: not that
                nul = _nul_in(item) if "\\u0000" in stored else None
                try:
                    change = parse(procedure, item, uow, lookups)
                    if nul is not None:  # where no check of the item's values refused it
                        raise Invalid.one("invalid_character", NUL_MESSAGE, nul)
                except Invalid as e:
                    errors = [err.as_dict() for err in e.errors]
                    if nul is not None:  # the errors may quote it too
                        stored, errors = json_text(_without_nul(item)), _without_nul(errors)
                    entries.append((i, "INVALID", stored, None, errors))
                    continue
                entries.append((i, "NOT_STARTED", stored, change, None))
                if valid % CHUNK_SIZE == 0:
                    bounds.append([i, i])
                bounds[-1][1], valid = i, valid + 1
                if kind == "update":
                    names.append(change["id"] if "id" in change else change["pk"])
                    by_key.append("id" not in change)
                    moves_keys = moves_keys or procedure.primary_key in change["data"]
            settle()  # the batch before is stored: at most one is in flight
            uow.jobs.add_entries(job_id, entries)
            total += len(batch)
    if total == 0:
        raise Invalid.one("required", "send at least one process", "processes")
    if kind == "update" and not moves_keys:
        after = _chunk_order(uow, procedure, names, by_key)
    else:  # creates match records and primary keys, so do key changes: one chunk after the other
        after = {n: n - 1 for n in range(1, len(bounds))}
    # a task per chunk; the jobs of a procedure are its lane: a chunk waits for the chunks of its job up to
    # the one it names, or else for nothing but the procedure's earlier jobs
    chunks = [
        NewTask(job_id, n, {"first": first, "end": last + 1}, after.get(n))
        for n, (first, last) in enumerate(bounds)
    ]
    uow.tasks.add(CHUNK, chunks, lane=procedure.id, now=now)
    uow.jobs.counted(job_id, now, total=total, invalid=total - valid, chunks=len(chunks))
    if not chunks:  # every entry INVALID: the job is over already
        job_finished(uow, job_id, now)
    uow.on_commit(partial(_counted, kind, total - valid, finished=not chunks))
    return job_view(uow, job_id)


def _counted(kind: str, invalid: int, *, finished: bool) -> None:
    """A submitted job's entries refused at once, and the job if none was left to apply, in the metrics."""
    if invalid:
        metrics.BULK_ENTRIES.labels(kind, "INVALID").inc(invalid)
    if finished:
        metrics.BULK_JOBS.labels(kind, "COMPLETED").inc()


NUL_MESSAGE = "strings must not hold the NUL character (\\u0000)"


def _nul_in(value: Any, path: str = "") -> str | None:
    """Where ``value`` holds the NUL character, in a string or a key (``data.city``; ``item`` at the top),
    which PostgreSQL cannot store; None if nowhere."""
    if isinstance(value, str):
        return (path or "item") if "\x00" in value else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, inner in items:
        here = f"{path}.{key}" if path else str(key)
        if isinstance(key, str) and "\x00" in key:
            return here
        if (found := _nul_in(inner, here)) is not None:
            return found
    return None


def _without_nul(value: Any) -> Any:
    """``value`` with every NUL character in its strings and keys replaced by U+FFFD, so it can be kept."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def _chunk_order(
    uow: UnitOfWork, procedure: Procedure, names: list[str], by_key: bytearray
) -> dict[int, int]:
    """Chunk -> the latest earlier chunk naming one of its processes (``names``: each valid entry's process
    id, or its primary-key value where ``by_key``): it waits for every chunk up to that one, so that the
    entries of a process apply in the order sent, while chunks naming other processes run at once. When the
    job names processes both ways, primary keys are resolved to ids, so that both names of one process count
    as one."""
    ids: dict[str, str] = {}
    if 0 < sum(by_key) < len(by_key):
        values = [name for name, keyed in zip(names, by_key, strict=True) if keyed]
        for start in range(0, len(values), ENTRY_BATCH):
            ids.update(uow.processes.ids_by_pk(procedure.id, values[start : start + ENTRY_BATCH]))
    chunk_of: dict[tuple[bool, str], int] = {}  # process (by key?, name) -> the last chunk naming it
    after: dict[int, int] = {}
    for position, (name, keyed) in enumerate(zip(names, by_key, strict=True)):
        process = (False, ids[name]) if keyed and name in ids else (bool(keyed), name)
        chunk = position // CHUNK_SIZE
        previous = chunk_of.get(process, chunk)
        if previous != chunk:
            after[chunk] = max(after.get(chunk, previous), previous)
        chunk_of[process] = chunk
    return after


def get_job(uows: UnitsOfWork, caller: Caller, job_id: str) -> dict[str, Any]:
    """A job's status, timings and counts."""
    with uows.read(caller.team_id) as uow:
        return job_view(uow, job_id)


def job_view(uow: UnitOfWork, job_id: str) -> dict[str, Any]:
    job = uow.jobs.get(job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    return {**_job_fields(job), "counts": job.counts}


def _job_fields(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind,
        "procedure": job.procedure_id,
        "status": job.status,
        "total": job.total,
        "createdBy": job.created_by,
        "createdAt": job.created_at,
        "startedAt": job.started_at,
        "finishedAt": job.finished_at,
    }


def list_jobs(uows: UnitsOfWork, caller: Caller, *, limit: int = 50) -> list[dict[str, Any]]:
    """The team's latest jobs, newest first, with their counts."""
    with uows.read(caller.team_id) as uow:
        return [{**_job_fields(job), "counts": job.counts} for job in uow.jobs.latest(limit=limit)]


def job_entries(
    uows: UnitsOfWork, caller: Caller, job_id: str, *, status: str | None, after: int, limit: int
) -> tuple[list[Any], dict]:
    """A page of entries: index, status, the original item, the process id and the errors."""
    with uows.read(caller.team_id) as uow:
        if uow.jobs.get(job_id) is None:
            raise NotFound(f"no job {job_id!r}")
        rows = uow.jobs.entries(job_id, status=status, after=after, limit=limit + 1)
    page = [
        {
            "index": r["idx"],
            "status": r["status"],
            "item": r["item"],
            "processId": r["process_id"],
            "errors": r["error"] or [],
        }
        for r in rows[:limit]
    ]
    more = len(rows) > limit
    return page, {"hasMore": more, "nextAfter": page[-1]["index"] if more else None}


def abort_job(uows: UnitsOfWork, caller: Caller, job_id: str) -> dict[str, Any]:
    """Stop a job: entries not yet applied stay NOT_STARTED (the runs of a batch not yet finished are
    cancelled)."""
    with uows.write(caller.team_id) as uow:
        job = uow.jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}")
        now = now_ms()
        if uow.jobs.abort(job_id, now):
            if job.kind == "run":  # its runs not finished are cancelled
                uow.runs.cancel_job(job_id, now)
            job_finished(uow, job_id, now)
            uow.on_commit(metrics.BULK_JOBS.labels(job.kind, "ABORTED").inc)
        uow.commit()
        return job_view(uow, job_id)
