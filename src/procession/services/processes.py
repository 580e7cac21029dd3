"""Process writes: create, update, delete (an update of ``isDeleted``), the one rule set every change of a
stored process goes through, and the translation of external fields into a domain change."""

from __future__ import annotations

from typing import Any

from procession.domain.attributes import epoch_ms
from procession.domain.clock import new_id, now_ms
from procession.domain.errors import Conflict, FieldError, Invalid, NotFound
from procession.domain.procedure import Procedure
from procession.domain.process import Event, Process, ProcessChange, Status
from procession.domain.query import Parser
from procession.services.commands import CreateProcess, ProcessFields, RecordInput, UpdateProcess
from procession.services.common import Caller
from procession.services.idempotency import Once, run_once
from procession.services.views import process_view
from procession.store.repositories.processes import duplicate_key
from procession.store.uow import Lookups, UnitOfWork, UnitsOfWork

STATUSES = [s.value for s in Status]


def load_procedure(uow: UnitOfWork, ref: str) -> Procedure:
    procedure = uow.procedures.get(ref)
    if procedure is None:
        raise NotFound(f"no procedure {ref!r}", field="procedureShortId")
    return procedure


def query_parser(uow: UnitOfWork, procedure: Procedure) -> Parser:
    """The parser of ``where`` and ``sort`` for the procedure's processes (and its entity's records)."""
    entity = uow.entities.get(procedure.entity) if procedure.entity else None
    return Parser(procedure, Lookups(uow), entity)


def resolve_change(
    uow: UnitOfWork, procedure: Procedure, fields: ProcessFields, lookups: Lookups | None = None
) -> ProcessChange:
    """External fields (shortIds, usernames, numeric strings) -> a domain change of ids; all errors at once."""
    lookups = lookups or Lookups(uow)
    change = ProcessChange()
    errors: list[FieldError] = []
    sent = fields.model_fields_set
    try:
        change.data = procedure.normalise_data(fields.data, lookups)
    except Invalid as e:
        errors.extend(e.errors)
    if "state" in sent and fields.state is not None:
        try:
            change.state = procedure.state_id(fields.state)
        except Invalid as e:
            errors.extend(e.errors)
    if "status" in sent and fields.status is not None:
        if fields.status in STATUSES:
            change.status = fields.status
        else:
            errors.append(
                FieldError("invalid_value", f"status must be one of {', '.join(STATUSES)}", "status")
            )
    if "nextActionAt" in sent:
        try:
            change.next_action_at = None if fields.nextActionAt is None else epoch_ms(fields.nextActionAt)
        except ValueError as e:
            errors.append(FieldError("invalid_value", f"nextActionAt {e}", "nextActionAt"))
    for name, attr, lookup, what in (
        ("assignedTo", "assigned_to", lookups.user_id, "user"),
        ("belongsTo", "belongs_to", lookups.pod_id, "pod"),
    ):
        if name in sent:
            ref = getattr(fields, name)
            resolved = lookup(ref) if ref is not None else None
            if ref is not None and resolved is None:
                errors.append(FieldError(f"unknown_{what}", f"{ref!r} is not a {what} of this team", name))
            setattr(change, attr, resolved)
    if "parentProcess" in sent and fields.parentProcess is not None:
        if procedure.parent is None:
            errors.append(
                FieldError(
                    "no_parent_procedure", f"{procedure.short_id} has no parent procedure", "parentProcess"
                )
            )
        elif not lookups.process_exists(fields.parentProcess, procedure.parent):
            errors.append(
                FieldError(
                    "unknown_process",
                    f"{fields.parentProcess!r} is not a process of the parent procedure",
                    "parentProcess",
                )
            )
        change.parent_process = fields.parentProcess
    if errors:
        raise Invalid(errors)
    return change


def _record(uow: UnitOfWork, procedure: Procedure, given: RecordInput, now: int) -> tuple[str, str]:
    """The (entity id, record id) of the record a process is created for: matched by primary key or created."""
    entity = uow.entities.get(procedure.entity) if procedure.entity else None
    if entity is None:
        raise Invalid.one("no_entity", f"{procedure.short_id} is not created for records", "record")
    if given.id is not None:
        if given.data or not uow.records.exists(given.id, entity.id):
            raise Invalid.one(
                "unknown_record",
                f"{given.id!r} is not a {entity.short_id} record (send id or data)",
                "record.id",
            )
        return entity.id, given.id
    data = entity.normalise_data(given.data, Lookups(uow), prefix="record.data")
    pk, pk_value = entity.primary_key_attribute, entity.key_of(data)
    found = uow.records.by_pk(entity.id, pk_value) if pk_value is not None else None
    if found is not None:
        record_id, stored = found
        if any(stored.get(k) != v for k, v in data.items()):
            uow.records.update_data(record_id, {**stored, **data}, now)
        return entity.id, record_id
    missing = entity.missing_required(data, prefix="record.data")
    if pk is not None and pk_value is None:  # said once, as the primary key (it may be a required one too)
        key = f"record.data.{pk.short_id}"
        missing = [e for e in missing if e.field != key]
        missing.append(FieldError("required", f"{pk.short_id} (the primary key) is required", key))
    if missing:
        raise Invalid(missing)
    record_id = new_id()
    uow.records.add(
        id=record_id,
        entity_id=entity.id,
        pk_value=pk_value,
        data=data,
        now=now,
    )
    return entity.id, record_id


def record_data(uow: UnitOfWork, procedure: Procedure, record_id: str | None) -> dict[str, Any] | None:
    """The record's data by shortId, for requirements that read it (None when none does)."""
    if not record_id or not procedure.reads_record:
        return None
    found = uow.records.data_of([record_id]).get(record_id)
    entity = uow.entities.get(found[0]) if found else None
    return entity.to_short(found[1]) if found and entity else {}


def create_process(
    uows: UnitsOfWork,
    caller: Caller,
    procedure_ref: str,
    cmd: CreateProcess,
    *,
    once: Once | None = None,
    process_id: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """Create one process, in a transaction of its own: (201, the process); a replayed ``once`` key gets the
    first answer."""
    return run_once(
        uows,
        caller.team_id,
        once,
        201,
        lambda uow: create_in(uow, caller, procedure_ref, cmd, process_id=process_id),
    )


def create_in(
    uow: UnitOfWork, caller: Caller, procedure_ref: str, cmd: CreateProcess, *, process_id: str | None = None
) -> dict[str, Any]:
    """Create one process in ``uow`` (a request's, or a bulk entry's savepoint): its record and its events go
    with it."""
    now = now_ms()
    procedure = load_procedure(uow, procedure_ref)
    change = resolve_change(uow, procedure, cmd)
    for attr in procedure.attributes:
        if attr.generated and change.data.get(attr.id) is None:
            number = uow.procedures.next_number(procedure.id, attr.id)
            change.data[attr.id] = (
                f"{attr.config.get('prefix', '')}{number}" if attr.type == "stringId" else number
            )
    if cmd.record is not None:
        change.entity, change.record = _record(uow, procedure, cmd.record, now)
    process, events = Process.create(
        procedure,
        change,
        id=process_id or new_id(),
        team=caller.team_id,
        created_by=caller.user_id,
        now=now,
        record=record_data(uow, procedure, change.record or None),
    )
    uow.processes.save(procedure, process, events, actor=caller.user_id)
    return process_view(process, procedure)


def find_process(
    uow: UnitOfWork,
    procedure: Procedure,
    ref: tuple[str, ...],
    *,
    for_update: bool = False,
    include_deleted: bool = False,
) -> Process:
    """The process named by ``(id,)`` or ``(primary-key shortId, value)``; 404 when absent or deleted."""
    process_id: str | None = ref[0]
    if len(ref) == 2:
        pk = procedure.primary_key_attribute
        if pk is None or ref[0] != pk.short_id:
            raise NotFound(f"{ref[0]!r} is not the primary key of {procedure.short_id}")
        try:
            value = pk.normalise(ref[1], Lookups(uow))
        except ValueError:
            value = ref[1]
        process_id = uow.processes.id_by_pk(procedure.id, str(value))
    process = uow.processes.get(process_id, for_update=for_update) if process_id else None
    if process is None or process.procedure != procedure.id or (process.is_deleted and not include_deleted):
        raise NotFound(f"no {procedure.short_id} process {'/'.join(ref)!r}")
    return process


def update_process(
    uows: UnitsOfWork,
    caller: Caller,
    procedure_ref: str,
    ref: tuple[str, ...],
    cmd: UpdateProcess,
    *,
    expected_version: int | None = None,
) -> dict[str, Any]:
    """Change the fields sent, on the current row (locked), in a transaction of its own."""
    with uows.write(caller.team_id) as uow:
        now = now_ms()
        procedure = load_procedure(uow, procedure_ref)
        process = find_process(uow, procedure, ref, for_update=True, include_deleted=True)
        expected = cmd.version if cmd.version is not None else expected_version
        if expected is not None and expected != process.version:
            raise Conflict(
                f"the process is at version {process.version}, not {expected}",
                field="version",
                code="stale_version",
            )
        if cmd.primaryBooking is not None:
            raise Invalid.one("not_supported", "bookings are not available yet", "primaryBooking")
        change = resolve_change(uow, procedure, cmd)
        if cmd.isDeleted is not None:
            change.is_deleted = cmd.isDeleted
        by = ref[0] if len(ref) == 2 else "id"  # (id,) or (primary key's shortId, value)
        events = change_process(uow, procedure, process, change, ref=ref[-1], by=by, now=now)
        uow.processes.save(procedure, process, events, actor=caller.user_id)
        uow.commit()
    return process_view(process, procedure)


def delete_process(
    uows: UnitsOfWork, caller: Caller, procedure_ref: str, ref: tuple[str, ...]
) -> dict[str, Any]:
    """Delete one process (soft: an update of ``isDeleted``)."""
    return update_process(uows, caller, procedure_ref, ref, UpdateProcess(isDeleted=True))


def change_process(
    uow: UnitOfWork,
    procedure: Procedure,
    process: Process | None,
    change: ProcessChange,
    *,
    ref: str,
    now: int,
    keys: dict[str, str | None] | None = None,
    by: str = "id",
) -> list[Event]:
    """The one rule set for changing a stored process, a single update's or a bulk entry's: it exists and is
    not deleted (unless restored), a new primary-key value is no other process's, then the domain's rules
    (``Process.apply``). Its events.

    A batch applies its changes before it writes any: ``keys`` holds the primary-key values its changes so far
    gave (value -> process id) or freed (value -> None), which the database does not know yet; it is
    updated, so that each change meets the keys as the ones before it left them. ``ref`` is the value the
    process was looked for by, ``by`` what it is (``id``, or the primary key's shortId): an error names both."""
    if process is None or process.procedure != procedure.id:
        raise NotFound(f"no {procedure.short_id} process has {by} {ref!r}", field=by)
    if process.is_deleted and change.is_deleted is not False:
        raise NotFound(
            f"the {procedure.short_id} process with {by} {ref!r} is deleted (send isDeleted: false to restore "
            "it)",
            field=by,
            code="deleted",
        )
    record = record_data(uow, procedure, process.record)
    if procedure.primary_key is None or procedure.primary_key not in change.data:
        return process.apply(procedure, change, now=now, record=record)  # the key stays
    old_key, new_key = procedure.key_of(process.data), procedure.key_of(change.data)
    if new_key == old_key:
        return process.apply(procedure, change, now=now, record=record)
    if new_key is not None:
        if keys is not None and new_key in keys:
            holder = keys[new_key]
        else:
            holder = uow.processes.id_by_pk(procedure.id, new_key)
        if holder is not None and holder != process.id:
            raise duplicate_key(procedure, new_key)
    events = process.apply(procedure, change, now=now, record=record)
    if keys is not None:
        if old_key is not None:
            keys[old_key] = None
        if new_key is not None:
            keys[new_key] = process.id
    return events
