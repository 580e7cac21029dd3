"""Retention on each database: a team's retention task removes, a batch a round, the entries of jobs that
finished long enough ago, finished runs and webhook deliveries with their attempts, and (only once the team
sets it) old events; it keeps recent rows, a running job's entries however old, and itself pending."""

from __future__ import annotations

import itertools
from typing import Any

import sqlalchemy as sa

from procession.domain.clock import new_id, now_ms
from procession.engine.retention import DAY_MS, Rounds
from procession.engine.tasks import Kinds, run_task
from procession.services.teams import set_event_retention
from procession.store import tables as t
from procession.store.repositories.retention import RETENTION, ensure_tasks
from tests.conftest import Team
from tests.integration.text import scattered, segments

NOW = now_ms()
OLD, RECENT = NOW - 40 * DAY_MS, NOW - 2 * DAY_MS
_ids = itertools.count(1)


def insert(team: Team, table: sa.Table, **row: Any) -> Any:
    with team.services.engine.begin() as conn:
        result = conn.execute(
            table.insert().values(team_id=team.id, **row)
            if "team_id" in table.c
            else table.insert().values(**row)
        )
        return result.inserted_primary_key[0] if result.inserted_primary_key else None


def job(team: Team, procedure_id: str, *, finished_at: int | None, created_at: int, entries: int = 5) -> str:
    job_id = new_id()
    status = "IN_PROGRESS" if finished_at is None else "COMPLETED"
    insert(
        team,
        t.jobs,
        id=job_id,
        procedure_id=procedure_id,
        kind="update",
        status=status,
        total=entries,
        chunks_total=1,
        chunks_done=0 if finished_at is None else 1,
        failed=False,
        created_at=created_at,
        finished_at=finished_at,
    )
    with team.services.engine.begin() as conn:
        conn.execute(
            t.job_entries.insert(),
            [{"job_id": job_id, "idx": i, "status": "SUCCESS", "item": {}} for i in range(entries)],
        )
    return job_id


def run(team: Team, procedure_id: str, *, status: str, finished_at: int | None) -> int:
    run_id = insert(
        team,
        t.runs,
        automation_id=new_id(),
        version=1,
        procedure_id=procedure_id,
        process_id=new_id(),
        trigger_key=f"v{next(_ids)}",
        event={},
        depth=0,
        status=status,
        step=0,
        attempts=0,
        outputs={},
        wake_at=0,
        task_ref=new_id(),
        created_at=OLD,
        finished_at=finished_at,
    )
    insert(
        team, t.run_attempts, run_id=run_id, step=0, name="post", outcome="OK", started_at=OLD, duration_ms=1
    )
    return int(run_id)


def delivery(team: Team, *, status: str, finished_at: int | None) -> int:
    delivery_id = insert(
        team,
        t.webhook_deliveries,
        webhook_id=new_id(),
        subject=new_id(),
        event_key=f"v{next(_ids)}",
        event_type="process.updated",
        message_id=new_id(),
        body="{}",
        status=status,
        attempts=0,
        wake_at=0,
        task_ref=new_id(),
        created_at=OLD,
        finished_at=finished_at,
    )
    insert(team, t.webhook_attempts, delivery_id=delivery_id, outcome="OK", started_at=OLD, duration_ms=1)
    return int(delivery_id)


def event(team: Team, created_at: int) -> int:
    return int(
        insert(team, t.events, process_id=new_id(), type="process.updated", payload={}, created_at=created_at)
    )


def ids(team: Team, table: sa.Table, column: str = "id") -> set[Any]:
    with team.services.engine.connect() as conn:
        if "team_id" in table.c:
            return set(conn.scalars(sa.select(table.c[column]).where(table.c.team_id == team.id)))
        mine = sa.select(t.jobs.c.id).where(t.jobs.c.team_id == team.id)
        return set(conn.scalars(sa.select(table.c[column]).where(table.c.job_id.in_(mine))))


def retention_task(team: Team) -> dict[str, Any]:
    with team.services.engine.connect() as conn:
        c = t.tasks.c
        rows = conn.execute(
            sa.select(c.id, c.status, c.wake_at).where(c.team_id == team.id, c.kind == RETENTION)
        ).all()
    assert len(rows) == 1, rows  # the team's, added with it
    return rows[0]._asdict()


def rounds(team: Team, rounds: Rounds) -> int:
    """Make the team's retention task due, then run it while it is due at once; how many rounds it took."""
    task_id = retention_task(team)["id"]
    with team.services.engine.begin() as conn:
        conn.execute(t.tasks.update().where(t.tasks.c.id == task_id).values(wake_at=0))
    kinds, n = Kinds(rounds.kind()), 0
    while True:
        task = retention_task(team)
        assert task["status"] == "PENDING"
        if task["wake_at"] > now_ms():
            return n
        assert run_task(team.services.uows, kinds, task["id"])
        n += 1
        assert n < 100


def test_old_rows_go_in_batches_recent_ones_and_a_running_jobs_entries_stay(team: Team) -> None:
    with team.uow() as uow:
        lead = uow.procedures.get("lead")
    assert lead is not None
    old_job = job(team, lead.id, finished_at=OLD, created_at=OLD, entries=7)
    running_job = job(team, lead.id, finished_at=None, created_at=OLD)  # started long ago, still running
    recent_job = job(team, lead.id, finished_at=RECENT, created_at=RECENT)
    old_runs = {run(team, lead.id, status=s, finished_at=OLD) for s in ("SUCCEEDED", "FAILED", "CANCELLED")}
    waiting = run(team, lead.id, status="WAITING", finished_at=None)  # parked long ago: not finished
    recent_run = run(team, lead.id, status="SUCCEEDED", finished_at=RECENT)
    old_deliveries = {delivery(team, status=s, finished_at=OLD) for s in ("SUCCEEDED", "FAILED")}
    pending = delivery(team, status="PENDING", finished_at=None)
    recent_delivery = delivery(team, status="SUCCEEDED", finished_at=RECENT)
    old_events = {event(team, OLD) for _ in range(3)}
    recent_event = event(team, RECENT)

    every = Rounds(days=30, batch=2, every_ms=3600_000)
    assert rounds(team, every) > 3  # seven old entries, two at a time: a round each, and more
    assert ids(team, t.job_entries, "job_id") == {running_job, recent_job}
    assert len(ids(team, t.job_entries, "idx")) == 5
    assert ids(team, t.jobs) == {old_job, running_job, recent_job}  # a job keeps its counts
    assert ids(team, t.runs) == {waiting, recent_run}
    assert ids(team, t.run_attempts, "run_id") == {waiting, recent_run}
    assert ids(team, t.webhook_deliveries) == {pending, recent_delivery}
    assert ids(team, t.webhook_attempts, "delivery_id") == {pending, recent_delivery}
    assert old_runs.isdisjoint(ids(team, t.runs)) and old_deliveries.isdisjoint(
        ids(team, t.webhook_deliveries)
    )
    assert ids(team, t.events) >= old_events | {recent_event}  # events are the history: kept by default
    task = retention_task(team)
    assert task["status"] == "PENDING" and task["wake_at"] > now_ms() + 3000_000  # the next round, an hour on

    team.services.run(set_event_retention, team.id, 7)
    rounds(team, every)
    assert old_events.isdisjoint(ids(team, t.events)) and recent_event in ids(team, t.events)


def test_nothing_goes_when_retention_is_off_and_every_team_gets_one_task(team: Team) -> None:
    with team.uow() as uow:
        lead = uow.procedures.get("lead")
    assert lead is not None
    old_job = job(team, lead.id, finished_at=OLD, created_at=OLD)
    old_run = run(team, lead.id, status="SUCCEEDED", finished_at=OLD)
    rounds(team, Rounds(days=0))
    assert ids(team, t.job_entries, "job_id") == {old_job} and ids(team, t.runs) == {old_run}
    ensure_tasks(team.services.engine)  # at start: a team that has one pending gets no second
    retention_task(team)


def test_a_round_merges_the_text_index_a_pass_an_interval_at_most(team: Team) -> None:
    """SQLite: a round takes a step of merging the text index's segments, due again at once while the pass
    goes on; the next pass begins once ``every_ms`` has gone by since this one began."""
    if not team.services.settings.is_sqlite:
        return  # PostgreSQL's GIN indexes keep themselves: nothing to merge
    scattered(team, "Ted")  # more than one segment
    every = Rounds(days=0, every_ms=3600_000)
    assert rounds(team, every) >= 1 and segments(team) == 1
    scattered(team, "Lily")
    grown = segments(team)
    assert grown > 1
    assert rounds(team, every) == 1 and segments(team) == grown  # within the hour: nothing merged
    assert every.merging.began is not None
    every.merging.began -= 3600_000  # an hour on
    assert rounds(team, every) >= 1 and segments(team) == 1
