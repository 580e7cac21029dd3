"""What the bulk-job and task-engine tests share: a team's processes and jobs through the services, and
its tasks run as a worker runs them."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from procession.engine.tasks import run_task
from procession.services.commands import CreateProcess
from procession.services.jobs import CHUNK, get_job, job_entries, submit_job
from procession.services.processes import create_process
from procession.services.reads import get_process
from procession.store import tables as t
from procession.store.repositories.retention import RETENTION
from tests.conftest import Team


def create(team: Team, body: dict) -> dict:
    return team.services.run(create_process, team.caller, "lead", CreateProcess.model_validate(body))[1]


def submit(team: Team, items: Any, kind: str = "update") -> dict:
    return team.services.run(submit_job, team.caller, "lead", items, kind=kind)[1]


def task_of(team: Team, job_id: str, chunk: int) -> int:
    """The id of the task that applies chunk ``chunk`` of the job."""
    c = t.tasks.c
    with team.services.engine.connect() as conn:
        found = conn.scalar(sa.select(c.id).where(c.kind == CHUNK, c.ref == job_id, c.part == chunk))
    assert found is not None, (job_id, chunk)
    return int(found)


def run_chunk(team: Team, job_id: str, chunk: int, kinds: Any = None) -> bool:
    """Run the task of chunk ``chunk`` of the job, as a worker does: False if done, taken or not its turn."""
    svc = team.services
    return run_task(svc.uows, kinds or svc.kinds, task_of(team, job_id, chunk))


def drain(team: Team) -> int:
    """Run this team's pending tasks, as a worker would, but its retention task (periodic, always pending);
    the number run here. (A server sharing the database may run some too: claims make sure each task runs
    once.)"""
    c = t.tasks.c
    with team.services.engine.connect() as conn:
        pending = conn.execute(
            sa.select(c.id, c.ref)
            .where(c.team_id == team.id, c.status == "PENDING", c.kind != RETENTION)
            .order_by(c.id)
        ).all()
    applied = sum(run_task(team.services.uows, team.services.kinds, task_id) for task_id, _ in pending)
    for job_id in {ref for _, ref in pending}:  # tasks another runner claimed finish there
        deadline = time.monotonic() + 60
        while job(team, job_id)["status"] in ("NOT_STARTED", "IN_PROGRESS"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    return applied


def job(team: Team, job_id: str) -> dict:
    return team.services.run(get_job, team.caller, job_id)


def entries(team: Team, job_id: str, status: str | None = None) -> list[dict]:
    return team.services.run(job_entries, team.caller, job_id, status=status, after=-1, limit=1000)[0]


def read(team: Team, process_id: str) -> dict:
    return team.services.run(get_process, team.caller, "lead", (process_id,))
