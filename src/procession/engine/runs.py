"""Automation runs on the task engine (kind ``automation.runs``).

*Registered with the save.* ``register_runs`` is a follow-up of the single save path: for every save it
writes one run per automation its events trigger, in the save's transaction (a rolled-back save leaves no
run; a committed one always has its runs), and one task for the runs of that commit. A run names the
process version its save made (``trigger_key``): a second run for the same automation and event cannot
exist.

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
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from procession.connectors.outbound import Outbound
from procession.domain.attributes import epoch_ms
from procession.domain.automations import TIMED, Automation, Trigger
from procession.domain.clock import now_ms
from procession.domain.errors import Invalid, ProcessionError
from procession.domain.expressions import compute
from procession.domain.procedure import Procedure
from procession.domain.process import Event, Process
from procession.engine.batches import finish_entries
from procession.engine.steps import Active, process_vars
from procession.engine.tasks import Kind
from procession.services.commands import CreateProcess, UpdateProcess
from procession.services.common import Caller
from procession.services.processes import change_process, create_in, load_procedure, resolve_change
from procession.store.outbox import Saves
from procession.store.repositories.runs import (
    BLOCKED_MS,
    CANCELLED,
    FAILED,
    PENDING,
    RUNNING,
    SKIPPED,
    WAITING,
    Run,
)
from procession.store.tasks import WORKER, NewTask, Task
from procession.store.uow import UnitOfWork, UnitsOfWork

log = logging.getLogger("procession.engine")
KIND = "automation.runs"
MAX_TAKE = 1000  # runs one worker takes at once
MAX_DEPTH = 5  # runs started by saves that runs made, in a chain: deeper is an error of the run
HEADS = ("process.created", "process.updated")  # the first event of each save


# --- registered with the save -----------------------------------------------------------------------------


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


def fires(trigger: Trigger, event: Event, process: Process, procedure: Procedure) -> int | None:
    """When ``event`` makes the trigger fire: 0 for now, a time for a timed trigger; None if it does not."""
    kind, payload = trigger.type, event.payload
    created = event.type == "process.created"
    if kind == "created":
        return 0 if created else None
    if kind in ("state_reached", "status_reached"):
        name = kind.split("_")[0]
        wanted = trigger.state if name == "state" else trigger.status
        if created:
            return 0 if payload["snapshot"][name] == wanted else None
        return 0 if event.type == f"process.{name}_changed" and payload["to"] == wanted else None
    field = "next_action_at" if kind == "next_action_due" else f"data.{trigger.attribute}"
    if created:
        snapshot = payload["snapshot"]
        value = (
            snapshot["next_action_at"]
            if kind == "next_action_due"
            else snapshot["data"].get(trigger.attribute)
        )
    elif event.type == "process.updated" and field in payload["changes"]:
        value = payload["changes"][field][1]
    else:
        return None
    if value is None or (kind == "attribute_changed" and trigger.has_to and value != trigger.to):
        return None
    if kind == "attribute_changed":
        return 0
    return time_of(value) + trigger.offset_ms


def time_of(value: Any) -> int:
    """Epoch ms of a stored date or date-time value (a date: its midnight, UTC)."""
    return (
        value
        if isinstance(value, int)
        else epoch_ms(f"{value}T00:00:00Z" if len(str(value)) == 10 else value)
    )


def due_at(trigger: Trigger, process: Process) -> int | None:
    """When a timed trigger fires for the process as it is now."""
    if trigger.type == "next_action_due":
        value: Any = process.next_action_at
    else:
        value = process.data.get(trigger.attribute or "")
    return None if value is None else time_of(value) + trigger.offset_ms


def thin(event: Event, version: int) -> dict[str, Any]:
    """What a run keeps of its event (CEL's ``event``): its type, the version, and what moved."""
    out: dict[str, Any] = {"type": event.type, "version": version}
    if "from" in event.payload:
        out["from"], out["to"] = event.payload["from"], event.payload["to"]
    return out


def _condition(automation: Automation, procedure: Procedure, process: Process, event: Event) -> bool:
    if automation.condition is None:
        return True
    variables = {"process": process_vars(procedure, process), "event": {"type": event.type}, "now": now_ms()}
    try:
        return compute(automation.condition, variables) is True
    except ValueError:  # a value it reads is missing: the condition does not hold
        return False


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
    take: list[Run] = []
    wakes: list[int] = []
    for run in runs:
        due = (run.lease_until or 0) <= now if run.status == RUNNING else run.wake_at <= now
        first = earliest.get(run.process_id)
        if due and (first is None or first >= run.id) and len(take) < MAX_TAKE:
            take.append(run)
        elif due:
            wakes.append(now + BLOCKED_MS if len(take) < MAX_TAKE else now)
        else:
            wakes.append(run.lease_until or now if run.status == RUNNING else run.wake_at)
    return take, min(wakes) if wakes else None


class AutomationRuns:
    """The kind: its calls go through ``outbound()`` (made when first needed)."""

    def __init__(self, outbound: Callable[[], Outbound], lease_seconds: float = 60.0) -> None:
        self.outbound = outbound
        self.lease_ms = int(lease_seconds * 1000)  # a worker holds the runs it took this long
        self.budget_ms = self.lease_ms // 3  # and works on them this long, then hands back what is left

    def kind(self) -> Kind:
        return Kind(KIND, run=_never, hold=self.hold, outside=self.outside, give_up=give_up, max_attempts=20)

    def hold(self, uow: UnitOfWork, task: Task) -> Held | None:
        now = now_ms()
        take, wake = plan_batch(uow, task.ref, now)
        take = _within_limits(uow, take, now)
        if not take:
            if wake is None:
                uow.tasks.close(task, now)
            else:
                uow.tasks.schedule(task.id, max(wake, now + 1))
            return None
        token = f"{WORKER}/{uuid.uuid4().hex[:12]}"
        uow.runs.hold([r.id for r in take], token=token, until=now + self.lease_ms, now=now)
        uow.tasks.schedule(task.id, min(wake or now + self.lease_ms, now + self.lease_ms))
        return Held(token, _actives(uow, take, now), now)

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
    out = []
    for run in runs:
        automation, procedure = _automation(uow, run), uow.procedures.get(run.procedure_id)
        process = processes.get(run.process_id)
        if automation is None or procedure is None or process is None:
            active = Active(run, automation or _GONE, procedure or _NO_PROCEDURE, process or _NO_PROCESS)
            active.finish(FAILED, now, "its automation, procedure or process no longer exists")
        else:
            active = Active(run, automation, procedure, process)
            if process.record in records:
                entity_id, data = records[process.record]
                entity = uow.entities.get(entity_id)
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
            uow.runs.add_attempts(a.attempts)
            uow.runs.update([_progress(a.run)])
            uow.commit()
        a.attempts, a.process = [], process
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


__all__ = ["CANCELLED", "KIND", "AutomationRuns", "add_runs", "new_run", "register_runs"]
