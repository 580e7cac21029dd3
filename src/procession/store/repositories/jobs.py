"""Bulk jobs and their entries. An entry belongs to a team through its job: every statement on
``job_entries`` names the job's team too."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa

from procession.store import tables as t
from procession.store.batch import OF_TEAM, Write, insert_entries, mark_entries, run
from procession.store.repositories.base import TEAM, Repository
from procession.store.statement import Statement, driver_rows

J, E = t.jobs.c, t.job_entries.c


@dataclass(frozen=True)
class Job:
    id: str
    team_id: str
    procedure_id: str
    kind: str
    status: str
    total: int
    chunks_total: int
    chunks_done: int
    failed: bool
    created_by: str | None
    created_at: int
    started_at: int | None
    finished_at: int | None
    invalid: int
    succeeded: int
    errored: int

    @property
    def counts(self) -> dict[str, int]:
        """Entries by status."""
        done = self.invalid + self.succeeded + self.errored
        return {
            "INVALID": self.invalid,
            "NOT_STARTED": self.total - done,
            "SUCCESS": self.succeeded,
            "ERROR": self.errored,
        }


_JOB = Statement(sa.select(*t.jobs.c).where(J.team_id == TEAM, J.id == sa.bindparam("b_job")))
_P = t.procedures.c
_STANDING = Statement(
    sa.select(J.status, _P.version)
    .join(t.procedures, _P.id == J.procedure_id)
    .where(J.team_id == TEAM, J.id == sa.bindparam("b_job"))
)
_done = J.chunks_done + sa.bindparam("b_n", type_=sa.Integer)
_failed = J.failed | sa.bindparam("b_failed", type_=sa.Boolean)
_now = sa.bindparam("b_now", type_=sa.BigInteger)
_CHUNK_DONE = Statement(
    t.jobs.update()
    .where(J.team_id == TEAM, J.id == sa.bindparam("b_job"))
    .values(
        chunks_done=_done,
        succeeded=J.succeeded + sa.bindparam("b_ok", type_=sa.Integer),
        errored=J.errored + sa.bindparam("b_err", type_=sa.Integer),
        failed=_failed,
        started_at=sa.func.coalesce(J.started_at, _now),
        status=sa.case(
            (J.status == "ABORTED", J.status),
            (_done < J.chunks_total, "IN_PROGRESS"),
            (_failed, "FAILED"),
            else_="COMPLETED",
        ),
        finished_at=sa.case(  # an aborted job finished when it was aborted
            (_done >= J.chunks_total, sa.func.coalesce(J.finished_at, _now)), else_=J.finished_at
        ),
    )
    .returning(J.status)
)


def _of_team(team_id: str, job_id: str) -> Any:
    """SQL on ``job_entries`` of job ``job_id``: that job is the team's."""
    return sa.exists().where(J.id == job_id, J.team_id == team_id)


class Jobs(Repository):
    """A team's jobs and their entries."""

    def add(self, job: dict[str, Any]) -> None:
        self.conn.execute(t.jobs.insert().values(team_id=self.team_id, **job))

    def counted(self, job_id: str, now: int, *, total: int, invalid: int, chunks: int) -> None:
        """The job's ``total`` entries (``invalid`` of them INVALID) are stored, in ``chunks`` chunks; a job
        with none is complete at once."""
        done = {} if chunks else {"status": "COMPLETED", "finished_at": now}
        self.conn.execute(
            t.jobs.update()
            .where(J.team_id == self.team_id, J.id == job_id)
            .values(total=total, invalid=invalid, chunks_total=chunks, **done)
        )

    def add_entries(self, job_id: str, entries: list[tuple[int, str, str, Any, Any]]) -> None:
        """Entries ``(index, status, item as JSON text, change, error)`` of a job added in this transaction."""
        run(self.conn, insert_entries(self.conn, self.team_id, job_id, entries))

    def get(self, job_id: str) -> Job | None:
        row = self._first(_JOB, b_job=job_id)
        return replace(job := Job(*row), failed=bool(job.failed)) if row else None  # SQLite: 0 or 1

    def standing(self, job_id: str) -> tuple[str, int] | None:
        """The job's status and its procedure's version, in one read."""
        row = self._first(_STANDING, b_job=job_id)
        return (row[0], row[1]) if row else None

    def entries(self, job_id: str, *, status: str | None, after: int, limit: int) -> list[dict[str, Any]]:
        q = sa.select(E.idx, E.status, E.item, E.process_id, E.error).where(
            _of_team(self.team_id, job_id), E.job_id == job_id, E.idx > after
        )
        if status is not None:
            q = q.where(E.status == status)
        return [r._asdict() for r in self.conn.execute(q.order_by(E.idx).limit(limit))]

    def pending_entries(self, job: Job, first: int, end: int) -> list[tuple[int, Any]]:
        """Entries ``first`` to ``end`` (excluded) still to apply: (index, stored change) for updates,
        (index, item) for creates."""
        column = "change" if job.kind == "update" else "item"
        sql = (
            f"SELECT idx, {column} FROM job_entries WHERE job_id = {{0}} AND idx >= {{0}} AND idx < {{0}} "
            "AND status = 'NOT_STARTED' AND " + OF_TEAM + " ORDER BY idx"
        )
        return driver_rows(
            self.conn,
            sql.format("?"),
            sql.format("%s"),
            [job.id, first, end, job.id, self.team_id],
            json_columns=[1],
        )

    def marks(self, job_id: str, results: list[dict[str, Any]]) -> list[Write]:
        """The writes that record a chunk's entries' results (built ahead, for ``finish_chunk``)."""
        return mark_entries(self.conn, self.team_id, job_id, results)

    def finish_chunk(
        self,
        job_id: str,
        results: list[dict[str, Any]],
        now: int,
        *,
        failed: bool = False,
        marks: list[Write] | None = None,
    ) -> str:
        """Record a chunk's entries' results (``marks``, if built ahead) and move the job on; the job's new
        status."""
        run(self.conn, self.marks(job_id, results) if marks is None else marks)
        succeeded = sum(r["b_status"] == "SUCCESS" for r in results)
        params = {"b_job": job_id, "b_ok": succeeded, "b_err": len(results) - succeeded}
        return str(self._scalar(_CHUNK_DONE, **params, b_failed=failed, b_now=now, b_n=1))

    def finish_entries(self, job_id: str, results: list[dict[str, Any]], now: int) -> str:
        """Record entries' results, each counting as a part done (a batch of runs: one entry a run); the
        job's new status."""
        run(self.conn, self.marks(job_id, results))
        succeeded = sum(r["b_status"] == "SUCCESS" for r in results)
        params = {"b_job": job_id, "b_ok": succeeded, "b_err": len(results) - succeeded, "b_n": len(results)}
        return str(self._scalar(_CHUNK_DONE, **params, b_failed=False, b_now=now))

    def latest(self, *, limit: int, before: int | None = None) -> list[Job]:
        """The team's jobs, newest first (``before``: created before that time)."""
        stmt = sa.select(*t.jobs.c).where(J.team_id == self.team_id)
        if before is not None:
            stmt = stmt.where(J.created_at < before)
        rows = self.conn.execute(stmt.order_by(J.created_at.desc(), J.id.desc()).limit(limit))
        return [replace(job := Job(*row), failed=bool(job.failed)) for row in rows]

    def abort(self, job_id: str, now: int) -> bool:
        result = self.conn.execute(
            t.jobs.update()
            .where(J.team_id == self.team_id, J.id == job_id, J.status.in_(("NOT_STARTED", "IN_PROGRESS")))
            .values(status="ABORTED", finished_at=now)
        )
        return result.rowcount == 1
