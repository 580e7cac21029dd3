"""Automation runs on the task engine (kind ``automation.runs``; they are registered by ``registration``).

*Run outside any transaction.* A worker takes the task's due runs in one short transaction (``hold``: each
marked RUNNING with a lease, and the task due again when the lease ends, so that a worker killed mid-run
leaves them to another), then advances them all at once (``outside``): steps that need no network run
in place, calls go out together, steps that save processes commit with the run's progress in one
transaction. What happened is written in one transaction at the end, only for the runs it still holds (a
cancelled run is not written over). Runs of one process start in the order of their events: a run waits
while an earlier run of its process is pending or running.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from procession import metrics
from procession.connectors.outbound import Outbound
from procession.connectors.secrets import Vault
from procession.domain.automations import Automation, Trigger
from procession.domain.clock import now_ms
from procession.domain.errors import ProcessionError
from procession.domain.expressions import compute
from procession.domain.procedure import Entity, Procedure
from procession.domain.process import Process
from procession.domain.triggers import due_at
from procession.engine import connected
from procession.engine.batches import finish_entries
from procession.engine.registration import KIND
from procession.engine.steps import Active
from procession.engine.tasks import Kind, take_due
from procession.engine.webhooks import runs_failed
from procession.services.commands import CreateProcess, UpdateProcess
from procession.services.common import Caller
from procession.services.processes import change_process, create_in, load_procedure, resolve_change
from procession.store.repositories.runs import (
    BLOCKED_MS,
    CANCELLED,
    FAILED,
    PENDING,
    RUNNING,
    SKIPPED,
    Run,
)
from procession.store.tasks import WORKER, Task
from procession.store.uow import UnitOfWork, UnitsOfWork

log = logging.getLogger("procession.engine")
MAX_TAKE = 1000  # runs one worker takes at once


# --- run by a worker --------------------------------------------------------------------------------------


@dataclass
class Held:
    token: str  # marks the runs this worker took, this time
    actives: list[Active]
    started: int


def plan_batch(uow: UnitOfWork, task_ref: str, now: int) -> tuple[list[Run], int | None]:
    """The runs of a task that can start now, and when the task is due again for the others (None: no
    run of it is left unfinished)."""
    runs = uow.runs.of_task(task_ref)
    if not runs:
        return [], None
    earliest = uow.runs.earliest_ahead(sorted({r.process_id for r in runs}))
    return take_due(runs, earliest, lambda r: r.process_id, now, limit=MAX_TAKE, blocked_ms=BLOCKED_MS)


class AutomationRuns:
    """The kind: its calls go through ``outbound()`` (made when first needed)."""

    def __init__(
        self,
        outbound: Callable[[], Outbound],
        lease_seconds: float = 60.0,
        *,
        vault: Callable[[], Vault] | None = None,
        files_dir: Path | None = None,
    ) -> None:
        self.outbound, self.vault, self.files_dir = outbound, vault, files_dir
        self.lease_ms = int(lease_seconds * 1000)  # a worker holds the runs it took this long
        self.budget_ms = self.lease_ms // 3  # and works on them this long, then hands back what is left

    def kind(self) -> Kind:
        return Kind(KIND, run=_never, hold=self.hold, outside=self.outside, give_up=give_up, max_attempts=20)

    def hold(self, uow: UnitOfWork, task: Task) -> Held | None:
        now = now_ms()
        take, wake = plan_batch(uow, task.ref, now)
        allowed = _within_limits(uow, take, now)
        if len(allowed) < len(take):  # the others wait for room under their automation's limit
            wake = min(wake or now + BLOCKED_MS, now + BLOCKED_MS)
        take = allowed
        if not take:
            if wake is None:
                uow.tasks.close(task, now)
            else:
                uow.tasks.schedule(task.id, max(wake, now + 1))
            return None
        token = f"{WORKER}/{uuid.uuid4().hex[:12]}"
        uow.runs.hold([r.id for r in take], token=token, until=now + self.lease_ms, now=now)
        uow.tasks.schedule(task.id, min(wake or now + self.lease_ms, now + self.lease_ms))
        actives = _actives(uow, take, now)
        self._connect(uow, actives)
        return Held(token, actives, now)

    def _connect(self, uow: UnitOfWork, actives: list[Active]) -> None:
        """For the runs with steps on connectors: the connectors' accounts (credentials opened for this hold
        only) and their processes' links."""
        named = {a.run.id: connected.connectors_of(a.automation) for a in actives if not a.done}
        ids = set().union(*named.values()) if named else set()
        if not ids:
            return
        accounts = connected.accounts(uow, self.vault(), ids) if self.vault else {}
        links = uow.links.of_processes(sorted({a.process.id for a in actives if named.get(a.run.id)}))
        for a in actives:
            if named.get(a.run.id):
                a.team_id, a.files_dir, a.accounts = uow.team_id, self.files_dir, accounts
                a.links = {(k.connector_id, k.object_type): k for k in links.get(a.process.id, [])}

    def outside(self, uows: UnitsOfWork, task: Task, held: Held) -> None:
        outbound, first = self.outbound(), True
        while True:
            live = [a for a in held.actives if not a.done]
            if not live:
                break
            if not first:
                _drop_lost(uows, task.team_id, held.token, live)
            first, now = False, now_ms()
            if now >= held.started + self.budget_ms:  # hand the rest back, due at once
                for a in live:
                    a.park(PENDING, now, a.run.error)
                break
            for a in live:
                a.cut_ms = self.lease_ms // 2
                a.next_call(now)
                while a.needs_local:
                    _local(uows, task.team_id, held.token, a)
                    if not a.done:
                        a.next_call(now_ms())
            sent = [(a, outbound.submit(a.call)) for a in live if a.call is not None]
            for a, future in sent:
                try:
                    reply: Any = future.result()
                except BaseException as e:  # Refused, Unreachable, or what went wrong
                    reply = e
                a.judge(reply, now_ms())
        _record(uows, task, held)


def _never(uow: UnitOfWork, task: Task) -> None:
    raise AssertionError("automation runs are held and run outside a transaction")


def give_up(uow: UnitOfWork, task: Task, error: str) -> None:
    """The task failed every attempt (a fault of the worker, not of a step): its runs fail with it."""
    now, runs = now_ms(), uow.runs.of_task(task.ref)
    for run in runs:
        run.status, run.error, run.finished_at = FAILED, f"could not be run: {error}", now
    uow.runs.update(
        [
            {"b_id": r.id, "status": r.status, "error": r.error, "finished_at": now, "held_by": None}
            for r in runs
        ]
    )
    finish_entries(uow, runs, now)
    runs_failed(uow, runs, now)
    uow.on_commit(lambda: observed(runs, []))


def observed(runs: list[Run], attempts: list[dict[str, Any]]) -> None:
    """Runs that finished and attempts of steps, in the metrics (once recorded)."""
    for run in runs:
        if run.finished_at is not None:
            metrics.RUNS.labels(run.status).observe(max(0, run.finished_at - run.created_at) / 1000)
            fields = {"run": run.id, "automation": run.automation_id, "process": run.process_id}
            log.info("run %s %s", run.id, run.status.lower(), extra={"fields": fields})
    for attempt in attempts:
        metrics.STEP_ATTEMPTS.labels(attempt["outcome"]).observe(attempt["duration_ms"] / 1000)


def _within_limits(uow: UnitOfWork, take: list[Run], now: int) -> list[Run]:
    """Of the runs to take, the ones their automation's concurrency allows."""
    limited = {r.automation_id for r in take}
    if not take or not limited:
        return take
    autos = {r.automation_id: _automation(uow, r) for r in take}
    limits = {aid: a.concurrency for aid, a in autos.items() if a is not None and a.concurrency}
    if not limits:
        return take
    running = uow.runs.running(sorted(limits), now)
    room = {aid: limit - running.get(aid, 0) for aid, limit in limits.items()}
    out = []
    for run in take:
        if run.automation_id in room:
            if room[run.automation_id] <= 0:
                continue
            room[run.automation_id] -= 1
        out.append(run)
    return out


def _actives(uow: UnitOfWork, runs: list[Run], now: int) -> list[Active]:
    processes = uow.processes.get_all(sorted({r.process_id for r in runs}))
    records = uow.records.data_of(sorted({p.record for p in processes.values() if p.record}))
    procedures = {i: uow.procedures.get(i) for i in {r.procedure_id for r in runs}}  # one read each per hold
    entities: dict[str, Entity | None] = {}
    out = []
    for run in runs:
        automation, procedure = _automation(uow, run), procedures[run.procedure_id]
        process = processes.get(run.process_id)
        if automation is None or procedure is None or process is None:
            active = Active(run, automation or _GONE, procedure or _NO_PROCEDURE, process or _NO_PROCESS)
            active.finish(FAILED, now, "its automation, procedure or process no longer exists")
        else:
            active = Active(run, automation, procedure, process)
            if process.record in records:
                entity_id, data = records[process.record]
                if entity_id not in entities:
                    entities[entity_id] = uow.entities.get(entity_id)
                entity = entities[entity_id]
                active.record = entity.to_short(data) if entity is not None else {}
            if "at" in run.event and run.step == 0 and due_at(automation.trigger, process) != run.event["at"]:
                active.finish(SKIPPED, now, "the time it was due for has changed")
        out.append(active)
    return out


_GONE = Automation("", "", False, 0, Trigger("manual"), None, ())
_NO_PROCEDURE = Procedure(id="", short_id="", label="", attributes=[])
_NO_PROCESS = Process(id="", team="", procedure="", created_by=None, status="", state=None, created_at=0,
                      updated_at=0)  # fmt: skip


def _automation(uow: UnitOfWork, run: Run) -> Automation | None:
    return _version(uow.team_id, run.automation_id, run.version, uow)


def _version(team_id: str, automation_id: str, version: int, uow: UnitOfWork) -> Automation | None:
    """An automation as it was at ``version`` (saved versions never change: kept once read)."""
    key = (team_id, automation_id, version)
    found = _VERSIONS.get(key)
    if found is None:
        stored = uow.runs.version(automation_id, version)
        if stored is None:
            return None
        found = _VERSIONS[key] = Automation.from_stored(stored)
    return found


_VERSIONS: dict[tuple[str, str, int], Automation] = {}


def _drop_lost(uows: UnitsOfWork, team_id: str, token: str, live: list[Active]) -> None:
    """Runs cancelled (or taken over) since they were taken are done here: no further step starts."""
    with uows.read(team_id) as uow:
        mine = uow.runs.still_held([a.run.id for a in live], token)
    for a in live:
        if a.run.id not in mine:
            a.lost = a.done = True


def _local(uows: UnitsOfWork, team_id: str, token: str, a: Active) -> None:
    """A step that saves a process, in one transaction with the run's progress: done exactly once."""
    now = now_ms()
    step = a.steps[a.run.step]
    variables = a.variables(now)
    config = step.config
    request: dict[str, Any] = {"type": step.type}
    try:
        with uows.write(team_id) as uow:
            uow.depth = a.run.depth + 1
            if not uow.runs.still_held([a.run.id], token):
                a.lost = a.done = True
                return
            fields: dict[str, Any] = {"data": {k: compute(v, variables) for k, v in config["data"].items()}}
            for name in ("state", "status"):
                if config.get(name) is not None:
                    fields[name] = config[name]
            if config.get("nextActionAt") is not None:
                fields["nextActionAt"] = compute(config["nextActionAt"], variables)
            request |= fields
            if step.type == "update_process":
                procedure = load_procedure(uow, a.procedure.id)
                process = uow.processes.get(a.process.id, for_update=True)
                change = resolve_change(uow, procedure, UpdateProcess(**fields))
                events = change_process(uow, procedure, process, change, ref=a.process.id, now=now)
                assert process is not None
                uow.processes.save(procedure, process, events, actor=None)
                output: Any = {"version": process.version, "changed": bool(events)}
            else:
                caller = Caller(team_id, "automation")
                fields["parentProcess"] = a.process.id
                created = create_in(uow, caller, config["procedure"], CreateProcess(**fields))
                output, process = {"id": created["id"]}, a.process
            a.attempt("OK", now_ms(), request=request, output=output)
            a.advance(output, now, then_end=False)
            connected.write_links(uow, [a], now)  # those of earlier steps: their results commit now
            uow.runs.add_attempts(a.attempts)
            uow.runs.update([_progress(a.run)])
            uow.on_commit(partial(observed, [], a.attempts))
            uow.commit()
        a.attempts, a.new_links, a.process = [], [], process
    except ProcessionError as e:
        a.fail(
            "; ".join(f"{x.field}: {x.message}" if x.field else x.message for x in e.errors),
            now,
            request=request,
        )
    except (ValueError, TypeError) as e:  # a CEL value that cannot be computed or does not fit
        a.fail(str(e), now, request=request)


def _progress(run: Run) -> dict[str, Any]:
    return {"b_id": run.id, "step": run.step, "attempts": run.attempts, "outputs": run.outputs}


def _record(uows: UnitsOfWork, task: Task, held: Held) -> None:
    """What happened to the runs taken, in one transaction: attempts, and each run's new state if it is still
    held (not cancelled, not taken over); then the task is due again for what is left, or done."""
    with uows.write(task.team_id) as uow:
        now = now_ms()
        mine = uow.runs.still_held([a.run.id for a in held.actives], held.token)
        uow.runs.add_attempts([row for a in held.actives for row in a.attempts])
        # what the steps made elsewhere is linked whether or not the run is still held: it exists there
        connected.write_links(uow, held.actives, now)
        changes, moved = [], []
        for a in held.actives:
            run = a.run
            if run.id not in mine:
                continue
            if run.status == RUNNING:
                run.status = PENDING
            changes.append(
                _progress(run)
                | {"status": run.status, "error": run.error, "wake_at": run.wake_at,
                   "finished_at": run.finished_at, "lease_until": None, "held_by": None}
            )  # fmt: skip
            moved.append(run)
        uow.runs.update(changes)
        for ref in uow.runs.later_tasks(sorted({r.process_id for r in moved})) - {task.ref}:
            uow.tasks.wake_ref(KIND, ref, now)
        finish_entries(uow, [r for r in moved if r.finished_at is not None and r.job_id is not None], now)
        runs_failed(uow, moved, now)
        uow.on_commit(partial(observed, moved, [row for a in held.actives for row in a.attempts]))
        take, wake = plan_batch(uow, task.ref, now)
        wake = now if take else wake
        if wake is None:
            uow.tasks.close(task, now)
        else:
            uow.tasks.schedule(task.id, wake)
            if wake <= now:
                uow.tasks.added.add((KIND, task.ref))
        uow.commit()
    log.debug("task %s: %d runs recorded", task.id, len(held.actives))


__all__ = ["CANCELLED", "KIND", "AutomationRuns"]
