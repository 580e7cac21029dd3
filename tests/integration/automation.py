"""What the automation tests share: automations defined through the services, and a team's runs worked
as a worker works them."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import sqlalchemy as sa

from procession.domain.clock import now_ms
from procession.engine.tasks import run_task
from procession.services.automations import AutomationInput, list_runs, save_automation
from procession.services.commands import CreateProcess, UpdateProcess
from procession.services.processes import create_process, update_process
from procession.store import tables as t
from tests.conftest import Team

FINISHED = ("SUCCEEDED", "FAILED", "CANCELLED", "SKIPPED")


def define(
    team: Team, body: dict[str, Any], procedure: str = "lead", ref: str | None = None
) -> dict[str, Any]:
    cmd = AutomationInput.model_validate({"name": "a", **body})
    return team.services.run(save_automation, team.id, procedure, cmd, ref=ref)


def post(url: str, **step: Any) -> dict[str, Any]:
    """An http step posting to ``url`` (quick retries, for tests)."""
    return {"name": "post", "type": "http", "method": "POST", "url": url, **step}


def create(team: Team, body: dict[str, Any] | None = None, procedure: str = "lead") -> dict[str, Any]:
    cmd = CreateProcess.model_validate(body or {})
    return team.services.run(create_process, team.caller, procedure, cmd)[1]


def update(team: Team, process_id: str, body: dict[str, Any], procedure: str = "lead") -> dict[str, Any]:
    cmd = UpdateProcess.model_validate(body)
    return team.services.run(update_process, team.caller, procedure, (process_id,), cmd)


def runs(team: Team, **filters: Any) -> list[dict[str, Any]]:
    return list(reversed(team.services.run(list_runs, team.id, limit=5000, **filters)))


def work(team: Team, *, until: float = 30.0, settle: bool = True) -> None:
    """Run the team's due tasks, as a worker does, until every run has finished (``settle``) or none is due
    now; fails after ``until`` seconds."""
    deadline = time.monotonic() + until
    c = t.tasks.c
    while True:
        with team.services.engine.connect() as conn:
            due = conn.scalars(
                sa.select(c.id)
                .where(c.team_id == team.id, c.status == "PENDING", c.wake_at <= now_ms())
                .order_by(c.wake_at, c.id)
            ).all()
        for task_id in due:
            run_task(team.services.uows, team.services.kinds, task_id)
        if not settle and not due:
            return
        if settle and all(r["status"] in FINISHED for r in runs(team)) and not due:
            return
        assert time.monotonic() < deadline, Counter((r["status"], r["error"]) for r in runs(team))
        if not due:
            time.sleep(0.02)
