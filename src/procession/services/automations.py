"""Automation use cases: define them (kept in their procedure's definition, every version saved), run one
by hand for a process, and follow, cancel, resume or re-run runs."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any, Literal

from pydantic import Field, StrictBool, StrictFloat

from procession.connectors.outbound import check_url
from procession.domain.automations import Automation, Trigger, parse_automation
from procession.domain.clock import new_id, now_ms
from procession.domain.errors import Conflict, NotFound
from procession.domain.procedure import Procedure
from procession.engine.batches import finish_entries
from procession.engine.registration import KIND, add_runs, new_run
from procession.services.commands import Command, Integer
from procession.services.common import Caller
from procession.services.processes import find_process, load_procedure
from procession.store.repositories.runs import CANCELLED, FAILED, PENDING, UNFINISHED, Run
from procession.store.tasks import NewTask
from procession.store.uow import UnitOfWork, UnitsOfWork


class RetryInput(Command):
    """How a step that failed for a passing reason is tried again: up to ``maxAttempts`` times, after
    ``backoffSeconds`` doubling."""

    maxAttempts: Integer = Field(default=5, ge=1, le=20)
    backoffSeconds: StrictFloat = Field(default=1, ge=0, le=3600)


class AutomationInput(Command):
    """An automation: ``trigger`` (``type``: created, state_reached + ``state``, status_reached + ``status``,
    attribute_changed + ``attribute`` [+ ``to``], next_action_due, date_offset + ``attribute`` +
    ``offsetMinutes``, manual), an optional CEL ``condition``, and ``steps`` (``type``: http, webhook,
    update_process, create_process, wait, hubspot.upsert, dropbox.upload; each with a ``name`` and an
    optional CEL ``when``)."""

    name: str = Field(min_length=1, max_length=100)
    enabled: StrictBool = True
    trigger: dict[str, Any]
    condition: str | None = Field(default=None, max_length=10_000)
    steps: list[dict[str, Any]] = Field(default_factory=list, max_length=50)
    concurrency: Integer | None = Field(default=None, ge=1, le=10_000, description="runs at once, at most")
    retry: RetryInput | None = None
    version: Integer | None = Field(default=None, ge=1, description="the version read; 409 if it changed")


class RunAgain(Command):
    version: Literal["same", "current"] = Field(
        default="same", description="the automation's version the run ran, or its current one"
    )


def save_automation(
    uows: UnitsOfWork, team_id: str, procedure_ref: str, cmd: AutomationInput, *, ref: str | None = None
) -> dict[str, Any]:
    """Create an automation of a procedure, or save a new version of automation ``ref``."""
    with uows.write(team_id) as uow:
        procedure = load_procedure(uow, procedure_ref)
        existing = _automation(procedure, ref) if ref else None
        if existing is not None and cmd.version is not None and cmd.version != existing.version:
            raise Conflict(
                f"the automation is at version {existing.version}", field="version", code="stale_version"
            )
        clash = procedure.automation(cmd.name)
        if clash is not None and clash is not existing:
            raise Conflict(f"{procedure.short_id} has an automation {cmd.name!r}", field="name")
        procedures: dict[str, Procedure] = {}
        for p in uow.procedures.list():
            procedures[p.short_id] = procedures[p.id] = p
        connectors = {key: c for c in uow.connectors.all() for key in (c.name, c.id)}
        rules = parse_automation(
            cmd.model_dump(exclude={"version"}),
            procedure,
            id=existing.id if existing else new_id(),
            version=existing.version + 1 if existing else 1,
            procedures=procedures,
            check_url=check_url,
            connectors=connectors,
        )
        automations = [rules if a is existing else a for a in procedure.automations]
        if existing is None:
            automations.append(rules)
        _save(uow, procedure, automations)
        uow.runs.save_version(rules.stored(), procedure.id, now_ms())
        uow.commit()
        return rules.public(procedure)


def delete_automation(uows: UnitsOfWork, team_id: str, procedure_ref: str, ref: str) -> dict[str, Any]:
    """Remove an automation: no run starts for it any more; its runs and versions stay."""
    with uows.write(team_id) as uow:
        procedure = load_procedure(uow, procedure_ref)
        gone = _automation(procedure, ref)
        _save(uow, procedure, [a for a in procedure.automations if a is not gone])
        uow.commit()
        return {"id": gone.id, "deleted": True}


def list_automations(uows: UnitsOfWork, team_id: str, procedure_ref: str) -> list[dict[str, Any]]:
    with uows.read(team_id) as uow:
        procedure = load_procedure(uow, procedure_ref)
        return [a.public(procedure) for a in procedure.automations]


def automation_summaries(uows: UnitsOfWork, team_id: str, procedure_ref: str) -> list[dict[str, Any]]:
    """The automations of a procedure, each with its runs by status and its last run."""
    with uows.read(team_id) as uow:
        procedure = load_procedure(uow, procedure_ref)
        counts = uow.runs.counts([a.id for a in procedure.automations])
        out = []
        for a in procedure.automations:
            last = uow.runs.search(automation_id=a.id, limit=1)
            out.append(
                a.public(procedure)
                | {"runs": counts.get(a.id, {}), "lastRun": last[0].public() if last else None}
            )
        return out


def get_automation(uows: UnitsOfWork, team_id: str, procedure_ref: str, ref: str) -> dict[str, Any]:
    with uows.read(team_id) as uow:
        procedure = load_procedure(uow, procedure_ref)
        return _automation(procedure, ref).public(procedure)


def _automation(procedure: Procedure, ref: str | None) -> Automation:
    found = procedure.automation(ref) if ref else None
    if found is None:
        raise NotFound(f"{procedure.short_id} has no automation {ref!r}")
    return found


def _save(uow: UnitOfWork, procedure: Procedure, automations: list[Automation]) -> None:
    changed = dataclasses.replace(procedure, automations=automations)
    if not uow.procedures.save(changed, expected_version=procedure.version):
        raise Conflict(f"{procedure.short_id} changed meanwhile; try again", code="stale_version")


# --- runs -------------------------------------------------------------------------------------------------


def run_automation(
    uows: UnitsOfWork, caller: Caller, procedure_ref: str, process_ref: str, automation_ref: str
) -> dict[str, Any]:
    """Run an automation for one process now, whatever its trigger (disabled ones too: a person asked)."""
    with uows.write(caller.team_id) as uow:
        now = now_ms()
        procedure = load_procedure(uow, procedure_ref)
        process = find_process(uow, procedure, (process_ref,))
        automation = _automation(procedure, automation_ref)
        row = new_run(
            automation,
            procedure.id,
            process.id,
            event={"type": "manual", "by": caller.user_id},
            trigger_key=None,
            wake_at=now,
            now=now,
        )
        (run_id,) = add_runs(uow, [row], now)
        uow.commit()
    return get_run(uows, caller.team_id, run_id)


def list_runs(uows: UnitsOfWork, team_id: str, **filters: Any) -> list[dict[str, Any]]:
    with uows.read(team_id) as uow:
        return [r.public() for r in uow.runs.search(**filters)]


def get_run(uows: UnitsOfWork, team_id: str, run_id: int) -> dict[str, Any]:
    """A run with every attempt of its steps."""
    with uows.read(team_id) as uow:
        run = _run(uow, run_id)
        return run.public() | {"attempts": uow.runs.attempts(run_id)}


def _run(uow: UnitOfWork, run_id: int, *, for_update: bool = False) -> Run:
    run = uow.runs.get(run_id, for_update=for_update)
    if run is None:
        raise NotFound(f"no run {run_id}")
    return run


def cancel_run(uows: UnitsOfWork, team_id: str, run_id: int) -> dict[str, Any]:
    """Cancel a run that has not finished, waiting or running: no step of it starts after this (a call in
    flight is not written over: its outcome is dropped)."""
    with uows.write(team_id) as uow:
        run = _run(uow, run_id, for_update=True)
        if run.status not in UNFINISHED:
            raise Conflict(
                f"run {run_id} is {run.status}: only unfinished runs can be cancelled", code="finished"
            )
        now = now_ms()
        uow.runs.update(
            [{"b_id": run_id, "status": CANCELLED, "finished_at": now, "held_by": None, "lease_until": None}]
        )
        run.status, run.error = CANCELLED, "cancelled"
        finish_entries(uow, [run], now)  # its batch's entry, if it has one
        uow.commit()
    return get_run(uows, team_id, run_id)


def resume_run(uows: UnitsOfWork, team_id: str, run_id: int, cmd: RunAgain) -> dict[str, Any]:
    """Run a failed (or cancelled) run on from the step it stopped at, its outputs so far kept (no longer
    an entry of the batch it was in, if any: that entry keeps its outcome)."""
    with uows.write(team_id) as uow:
        run = _run(uow, run_id, for_update=True)
        if run.status not in (FAILED, CANCELLED):
            raise Conflict(
                f"run {run_id} is {run.status}: only failed or cancelled runs resume", code="not_failed"
            )
        version = _version(uow, run, cmd)
        now, ref = now_ms(), uuid.uuid4().hex
        uow.runs.update(
            [
                {"b_id": run_id, "status": PENDING, "attempts": 0, "error": None, "finished_at": None,
                 "wake_at": now, "task_ref": ref, "version": version, "job_id": None, "job_idx": None}
            ]
        )  # fmt: skip
        uow.tasks.add(KIND, [NewTask(ref)], now=now)
        uow.commit()
    return get_run(uows, team_id, run_id)


def rerun(uows: UnitsOfWork, team_id: str, run_id: int, cmd: RunAgain) -> dict[str, Any]:
    """A new run of the same automation, for the same process and event, from the first step."""
    with uows.write(team_id) as uow:
        run = _run(uow, run_id)
        if run.status in UNFINISHED:
            raise Conflict(f"run {run_id} is {run.status}: cancel it first", code="unfinished")
        version = _version(uow, run, cmd)
        now = now_ms()
        automation = Automation(run.automation_id, "", True, version, Trigger("manual"), None, ())  # its id
        row = new_run(
            automation, run.procedure_id, run.process_id, event=run.event, trigger_key=None, wake_at=now,
            now=now, rerun_of=run.id, depth=run.depth,
        )  # fmt: skip
        (new,) = add_runs(uow, [row], now)
        uow.commit()
    return get_run(uows, team_id, new)


def _version(uow: UnitOfWork, run: Run, cmd: RunAgain) -> int:
    if cmd.version == "same":
        return run.version
    procedure = load_procedure(uow, run.procedure_id)
    return _automation(procedure, run.automation_id).version
