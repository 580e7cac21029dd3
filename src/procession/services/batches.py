"""Automations run in batch (the control panel): a job of kind ``run`` over the processes a filter finds, a
list of ids, or the failed runs of an earlier batch or automation. Each entry is one run, and its result is
the run's outcome (``engine.batches``); progress, entries and abort are the bulk jobs' own."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import Field, StrictBool

from procession.domain.automations import Automation
from procession.domain.clock import new_id, now_ms
from procession.domain.errors import Invalid, NotFound
from procession.engine.registration import KIND, add_runs, new_run
from procession.services.automations import _automation
from procession.services.commands import Command
from procession.services.common import Caller
from procession.services.jobs import MAX_ITEMS, job_view
from procession.services.processes import load_procedure, query_parser
from procession.store.repositories.runs import FAILED, PENDING, Run
from procession.store.search import with_tiebreak
from procession.store.statement import json_text
from procession.store.tasks import NewTask
from procession.store.uow import UnitOfWork, UnitsOfWork

BATCH = 1000  # runs per task
PAGE = 5000  # processes read per query when a filter picks them


class FailedOf(Command):
    job: str | None = Field(default=None, description="the failed runs of this batch")
    automation: StrictBool = Field(default=False, description="every failed run of the automation")


class BatchInput(Command):
    """Which processes: ``where`` (the list endpoint's filter; ``{}`` for all), ``ids``, or ``failedOf``
    (the failed runs of a batch or of the automation, each ``rerun`` from its first step or ``resume``d from
    the step that failed)."""

    where: dict[str, Any] | None = None
    ids: list[str] | None = Field(default=None, max_length=MAX_ITEMS)
    failedOf: FailedOf | None = None
    mode: Literal["rerun", "resume"] = "rerun"


def submit_batch(
    uows: UnitsOfWork, caller: Caller, procedure_ref: str, automation_ref: str, cmd: BatchInput
) -> dict[str, Any]:
    """Start the automation for every process chosen, as one job: 202 with the job."""
    if sum(x is not None for x in (cmd.where, cmd.ids, cmd.failedOf)) != 1:
        raise Invalid.one("choose_one", "send exactly one of where, ids and failedOf", "where")
    with uows.write(caller.team_id) as uow:
        now = now_ms()
        procedure = load_procedure(uow, procedure_ref)
        automation = _automation(procedure, automation_ref)
        failed: list[Run] = []
        if cmd.failedOf is not None:
            failed = _failed(uow, automation, cmd.failedOf)
            process_ids = [r.process_id for r in failed]
        elif cmd.ids is not None:
            found = uow.processes.get_all(sorted(set(cmd.ids)))
            unknown = [i for i in cmd.ids if i not in found or found[i].procedure != procedure.id]
            if unknown:
                raise Invalid.one("unknown_process", f"no {procedure.short_id} process {unknown[0]!r}", "ids")
            process_ids = list(dict.fromkeys(cmd.ids))
        else:
            process_ids = _matching(uow, procedure, cmd.where or {})
        if not process_ids:
            raise Invalid.one("nothing_to_run", "no process matches", "where")
        job_id = new_id()
        uow.jobs.add(
            {"id": job_id, "procedure_id": procedure.id, "kind": "run", "status": "NOT_STARTED",
             "total": len(process_ids), "chunks_total": len(process_ids), "chunks_done": 0, "failed": False,
             "created_by": caller.user_id, "created_at": now}
        )  # fmt: skip
        entries = [
            (n, "NOT_STARTED", json_text({"processId": pid}), None, None) for n, pid in enumerate(process_ids)
        ]
        uow.jobs.add_entries(job_id, entries)
        if failed and cmd.mode == "resume":
            _resume(uow, failed, job_id, now)
        else:
            event = {"type": "batch", "job": job_id, "by": caller.user_id}
            rows = [
                new_run(automation, procedure.id, pid, event=event, trigger_key=None, wake_at=now, now=now,
                        job=(job_id, n), rerun_of=failed[n].id if failed else None)
                for n, pid in enumerate(process_ids)
            ]  # fmt: skip
            for start in range(0, len(rows), BATCH):
                add_runs(uow, rows[start : start + BATCH], now)
        uow.commit()
        return job_view(uow, job_id)


def _failed(uow: UnitOfWork, automation: Automation, of: FailedOf) -> list[Run]:
    if of.job is None and not of.automation:
        raise Invalid.one("choose_one", "failedOf names a job or the automation", "failedOf")
    if of.job is not None and uow.jobs.get(of.job) is None:
        raise NotFound(f"no job {of.job!r}")
    runs = uow.runs.search(automation_id=automation.id, status=FAILED, job_id=of.job, limit=MAX_ITEMS)
    return list(reversed(runs))


def _resume(uow: UnitOfWork, runs: list[Run], job_id: str, now: int) -> None:
    """The failed runs go on from their failed step, as the new job's entries."""
    for start in range(0, len(runs), BATCH):
        ref = uuid.uuid4().hex
        uow.runs.update(
            [
                {"b_id": r.id, "status": PENDING, "attempts": 0, "error": None, "finished_at": None,
                 "wake_at": now, "task_ref": ref, "job_id": job_id, "job_idx": start + n}
                for n, r in enumerate(runs[start : start + BATCH])
            ]
        )  # fmt: skip
        uow.tasks.add(KIND, [NewTask(ref)], now=now)


def _matching(uow: UnitOfWork, procedure: Any, where: dict[str, Any]) -> list[str]:
    """The ids of the processes ``where`` finds (not deleted), at most ``MAX_ITEMS``."""
    parser = query_parser(uow, procedure)
    condition, keys = parser.where(where), with_tiebreak(parser.sort([]))
    ids: list[str] = []
    after = None
    while True:
        rows = uow.processes.search(
            procedure.id, where=condition, keys=keys, after=after, skip=0, limit=PAGE, include_deleted=False
        )
        ids.extend(p.id for p, _ in rows[:PAGE])
        if len(ids) > MAX_ITEMS:
            raise Invalid.one("too_many", f"the filter finds more than {MAX_ITEMS:,} processes", "where")
        if len(rows) <= PAGE:
            return ids
        after = rows[PAGE - 1][1]
