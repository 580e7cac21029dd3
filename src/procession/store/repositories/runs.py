"""Automation runs, the attempts of their steps, and the saved versions of automations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from procession.store import tables as t
from procession.store.repositories.base import Numbered

R = t.runs.c
A = t.run_attempts.c
V = t.automation_versions.c
PENDING, RUNNING, WAITING = "PENDING", "RUNNING", "WAITING"
SUCCEEDED, FAILED, CANCELLED, SKIPPED = "SUCCEEDED", "FAILED", "CANCELLED", "SKIPPED"
UNFINISHED = (PENDING, RUNNING, WAITING)
AHEAD = (PENDING, RUNNING)  # a run of these holds back the later runs of its process
BLOCKED_MS = 1000  # a run held back by an earlier one of its process is looked at again after this


@dataclass
class Run:
    id: int
    automation_id: str
    version: int
    procedure_id: str
    process_id: str
    trigger_key: str | None
    event: dict[str, Any]
    depth: int
    status: str
    step: int
    attempts: int
    outputs: dict[str, Any]
    error: str | None
    wake_at: int
    lease_until: int | None
    held_by: str | None
    task_ref: str
    job_id: str | None
    job_idx: int | None
    rerun_of: int | None
    created_at: int
    started_at: int | None
    finished_at: int | None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "automationId": self.automation_id,
            "version": self.version,
            "procedureId": self.procedure_id,
            "processId": self.process_id,
            "event": self.event,
            "depth": self.depth,
            "status": self.status,
            "step": self.step,
            "attempts": self.attempts,
            "outputs": self.outputs,
            "error": self.error,
            "wakeAt": self.wake_at,
            "jobId": self.job_id,
            "rerunOf": self.rerun_of,
            "createdAt": self.created_at,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
        }


class Runs(Numbered[Run]):
    """A team's runs."""

    table = t.runs
    row = Run
    unfinished = UNFINISHED

    def search(
        self,
        *,
        automation_id: str | None = None,
        process_id: str | None = None,
        status: str | None = None,
        job_id: str | None = None,
        since: int | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[Run]:
        """Runs, newest first."""
        stmt = self._select()
        for column, value in (
            (R.automation_id, automation_id),
            (R.process_id, process_id),
            (R.status, status),
            (R.job_id, job_id),
        ):
            if value is not None:
                stmt = stmt.where(column == value)
        if since is not None:
            stmt = stmt.where(R.created_at >= since)
        if before_id is not None:
            stmt = stmt.where(R.id < before_id)
        return self._rows(stmt.order_by(R.id.desc()).limit(limit))

    def counts(self, automation_ids: list[str]) -> dict[str, dict[str, int]]:
        """Automation id -> runs by status."""
        if not automation_ids:
            return {}
        rows = self.conn.execute(
            sa.select(R.automation_id, R.status, sa.func.count())
            .where(R.team_id == self.team_id, R.automation_id.in_(automation_ids))
            .group_by(R.automation_id, R.status)
        )
        out: dict[str, dict[str, int]] = {}
        for automation_id, status, n in rows:
            out.setdefault(automation_id, {})[status] = int(n)
        return out

    def earliest_ahead(self, process_ids: list[str]) -> dict[str, int]:
        """For each process, the id of its earliest run that holds back the later ones."""
        if not process_ids:
            return {}
        rows = self.conn.execute(
            sa.select(R.process_id, sa.func.min(R.id))
            .where(R.team_id == self.team_id, R.process_id.in_(process_ids), R.status.in_(AHEAD))
            .group_by(R.process_id)
        )
        return {pid: int(first) for pid, first in rows}

    def running(self, automation_ids: list[str], now: int) -> dict[str, int]:
        """Runs of these automations held by a worker now."""
        rows = self.conn.execute(
            sa.select(R.automation_id, sa.func.count())
            .where(
                R.team_id == self.team_id,
                R.automation_id.in_(automation_ids),
                R.status == RUNNING,
                R.lease_until > now,
            )
            .group_by(R.automation_id)
        )
        return {aid: int(n) for aid, n in rows}

    def hold(self, run_ids: list[int], *, token: str, until: int, now: int) -> None:
        self.conn.execute(
            t.runs.update()
            .where(R.team_id == self.team_id, R.id.in_(run_ids))
            .values(
                status=RUNNING,
                held_by=token,
                lease_until=until,
                started_at=sa.func.coalesce(R.started_at, now),
            )
        )

    def still_held(self, run_ids: list[int], token: str) -> set[int]:
        """Of these runs, the ones ``token`` still holds (not cancelled, not taken over); locked on
        PostgreSQL until commit."""
        if not run_ids:
            return set()
        rows = self.conn.execute(
            sa.select(R.id)
            .where(R.team_id == self.team_id, R.id.in_(run_ids), R.held_by == token, R.status == RUNNING)
            .with_for_update()
        ).scalars()
        return set(rows)

    def update(self, changes: list[dict[str, Any]]) -> None:
        """Write runs' new state: each a dict with ``b_id`` and the columns to set (the same for all)."""
        if not changes:
            return
        columns = [k for k in changes[0] if k != "b_id"]
        self.conn.execute(
            t.runs.update()
            .where(R.team_id == self.team_id, R.id == sa.bindparam("b_id"))
            .values({c: sa.bindparam(c) for c in columns}),
            changes,
        )

    def cancel_job(self, job_id: str, now: int) -> None:
        """Cancel the unfinished runs of a batch."""
        self.conn.execute(
            t.runs.update()
            .where(R.team_id == self.team_id, R.job_id == job_id, R.status.in_(UNFINISHED))
            .values(status=CANCELLED, finished_at=now, held_by=None, lease_until=None)
        )

    def add_attempts(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(t.run_attempts.insert(), [{**r, "team_id": self.team_id} for r in rows])

    def attempts(self, run_id: int) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            sa.select(
                A.step,
                A.name,
                A.outcome,
                A.request,
                A.status_code,
                A.excerpt,
                A.output,
                A.error,
                A.started_at,
                A.duration_ms,
            )
            .where(A.team_id == self.team_id, A.run_id == run_id)
            .order_by(A.id)
        )
        return [
            {
                "step": r.step,
                "name": r.name,
                "outcome": r.outcome,
                "request": r.request,
                "statusCode": r.status_code,
                "excerpt": r.excerpt,
                "output": r.output,
                "error": r.error,
                "startedAt": r.started_at,
                "durationMs": r.duration_ms,
            }
            for r in rows
        ]

    def later_tasks(self, process_ids: list[str]) -> set[str]:
        """The tasks of pending runs of these processes (held back by the ones that just finished)."""
        if not process_ids:
            return set()
        rows = self.conn.execute(
            sa.select(R.task_ref)
            .where(R.team_id == self.team_id, R.process_id.in_(process_ids), R.status == PENDING)
            .distinct()
        ).scalars()
        return set(rows)

    def save_version(self, automation: dict[str, Any], procedure_id: str, now: int) -> None:
        self.conn.execute(
            t.automation_versions.insert().values(
                automation_id=automation["id"],
                version=automation["version"],
                team_id=self.team_id,
                procedure_id=procedure_id,
                definition=automation,
                created_at=now,
            )
        )

    def version(self, automation_id: str, version: int) -> dict[str, Any] | None:
        found = self.conn.scalar(
            sa.select(V.definition).where(
                V.team_id == self.team_id, V.automation_id == automation_id, V.version == version
            )
        )
        return dict(found) if found is not None else None
