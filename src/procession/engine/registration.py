"""Automation runs registered with the save that triggers them.

*Registered with the save.* ``register_runs`` is a follow-up of the single save path: for every save it
writes one run per automation its events trigger, in the save's transaction (a rolled-back save leaves no
run; a committed one always has its runs), and one task for the runs of that commit. A run names the
process version its save made (``trigger_key``): a second run for the same automation and event cannot
exist.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from procession.domain.automations import TIMED, Automation
from procession.domain.clock import now_ms
from procession.domain.errors import Invalid
from procession.domain.expressions import compute
from procession.domain.procedure import Procedure
from procession.domain.process import Event, Process
from procession.domain.triggers import fires, thin
from procession.store.outbox import Saves
from procession.store.repositories.runs import PENDING, WAITING
from procession.store.tasks import NewTask
from procession.store.uow import UnitOfWork

KIND = "automation.runs"  # the kind of task that runs them (``engine.runs``)
MAX_DEPTH = 5  # runs started by saves that runs made, in a chain: deeper is an error of the run
HEADS = ("process.created", "process.updated")  # the first event of each save


def register_runs(uow: UnitOfWork, saves: list[Saves]) -> None:
    """The follow-up: a run per automation the saves' events trigger, and a task for them."""
    rows: list[dict[str, Any]] = []
    now = now_ms()
    for s in saves:
        automations = [a for a in s.procedure.automations if a.enabled and a.trigger.type != "manual"]
        if not automations:
            continue
        heads = Counter(pid for pid, e in s.events if e.type in HEADS)
        for pid, event in s.events:
            if event.type in HEADS:
                heads[pid] -= 1
            process = s.processes[pid]
            if process.is_deleted:
                continue
            version = process.version - heads[pid]  # the version this event's save made
            for automation in automations:
                at = fires(automation.trigger, event, process, s.procedure)
                if at is None or not _condition(automation, s.procedure, process, event):
                    continue
                timed = automation.trigger.type in TIMED
                rows.append(
                    new_run(
                        automation,
                        s.procedure.id,
                        pid,
                        event=thin(event, version) | ({"at": at} if timed else {}),
                        trigger_key=f"v{version}",
                        depth=uow.depth,
                        wake_at=at if timed else now,
                        now=now,
                    )
                )
    if rows:
        if uow.depth > MAX_DEPTH:
            raise Invalid.one(
                "automation_depth", f"automations started by automations, {MAX_DEPTH} deep: no deeper", "id"
            )
        add_runs(uow, rows, now)


def new_run(
    automation: Automation,
    procedure_id: str,
    process_id: str,
    *,
    event: dict[str, Any],
    trigger_key: str | None,
    depth: int = 0,
    wake_at: int,
    now: int,
    job: tuple[str, int] | None = None,
    rerun_of: int | None = None,
) -> dict[str, Any]:
    return {
        "automation_id": automation.id,
        "version": automation.version,
        "procedure_id": procedure_id,
        "process_id": process_id,
        "trigger_key": trigger_key,
        "event": event,
        "depth": depth,
        "status": WAITING if wake_at > now else PENDING,
        "step": 0,
        "attempts": 0,
        "outputs": {},
        "error": None,
        "wake_at": wake_at,
        "lease_until": None,
        "held_by": None,
        "task_ref": "",
        "job_id": job[0] if job else None,
        "job_idx": job[1] if job else None,
        "rerun_of": rerun_of,
        "created_at": now,
        "started_at": None,
        "finished_at": None,
    }


def add_runs(uow: UnitOfWork, rows: list[dict[str, Any]], now: int) -> list[int]:
    """Write runs and the task that runs them (woken once committed)."""
    ref = uuid.uuid4().hex
    for row in rows:
        row["task_ref"] = ref
    ids = uow.runs.add(rows)
    uow.tasks.add(KIND, [NewTask(ref, wake_at=min(r["wake_at"] for r in rows))], now=now)
    return ids


def _condition(automation: Automation, procedure: Procedure, process: Process, event: Event) -> bool:
    if automation.condition is None:
        return True
    variables = {"process": process.variables(procedure), "event": {"type": event.type}, "now": now_ms()}
    try:
        return compute(automation.condition, variables) is True
    except ValueError:  # a value it reads is missing: the condition does not hold
        return False
