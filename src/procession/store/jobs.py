"""Jobs, their entries and chunks: the durable record of background work (the task engine only wakes it)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

import sqlalchemy as sa

from procession.store import tables as t
from procession.store.batch import insert_entries, mark_entries, run
from procession.store.db import Statement, driver_rows
from procession.store.repositories import Repository

J, E, C = t.jobs.c, t.job_entries.c, t.job_chunks.c
WORKER = f"{socket.gethostname()}:{os.getpid()}"  # who applied a chunk, for operators (and tests)


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


@dataclass(frozen=True)
class Chunk:
    job_id: str
    chunk_no: int
    first_idx: int
    end_idx: int
    attempts: int


class Jobs(Repository):
    """A team's jobs."""

    def add(self, job: dict[str, Any]) -> None:
        self.conn.execute(t.jobs.insert().values(team_id=self.team_id, **job))

    def add_chunks(
        self, job_id: str, chunks: list[dict[str, Any]], now: int, *, total: int, invalid: int
    ) -> None:
        """The job's chunks, once its ``total`` entries (``invalid`` of them INVALID) are stored; a job with
        none is complete at once."""
        if chunks:
            self.conn.execute(t.job_chunks.insert(), chunks)
        done = {} if chunks else {"status": "COMPLETED", "finished_at": now}
        self.conn.execute(
            t.jobs.update()
            .where(J.id == job_id)
            .values(total=total, invalid=invalid, chunks_total=len(chunks), **done)
        )

    def add_entries(self, job_id: str, entries: list[tuple[int, str, str, Any, Any]]) -> None:
        """Entries ``(index, status, item as JSON text, change, error)`` of a job added in this transaction."""
        run(self.conn, insert_entries(self.conn, job_id, entries))

    def get(self, job_id: str) -> Job | None:
        row = self.conn.execute(sa.select(t.jobs).where(J.team_id == self.team_id, J.id == job_id)).first()
        return Job(**row._asdict()) if row else None

    def entries(self, job_id: str, *, status: str | None, after: int, limit: int) -> list[dict[str, Any]]:
        q = sa.select(E.idx, E.status, E.item, E.process_id, E.error).where(E.job_id == job_id, E.idx > after)
        if status is not None:
            q = q.where(E.status == status)
        return [r._asdict() for r in self.conn.execute(q.order_by(E.idx).limit(limit))]

    def abort(self, job_id: str, now: int) -> bool:
        result = self.conn.execute(
            t.jobs.update()
            .where(J.team_id == self.team_id, J.id == job_id, J.status.in_(("NOT_STARTED", "IN_PROGRESS")))
            .values(status="ABORTED", finished_at=now)
        )
        return result.rowcount == 1


class Queue:
    """Chunks waiting to be applied, across teams: what the engine claims and the reconciler re-wakes."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def claim(self, job_id: str, chunk_no: int) -> Chunk | None:
        """Lock this pending chunk for this transaction; None if it is taken, done, or waits for earlier
        chunks of its job."""
        row = _CLAIM.first(self.conn, {"b_job": job_id, "b_no": chunk_no})
        return Chunk(*row) if row else None

    def pending(self, job_id: str, chunk_no: int) -> Chunk | None:
        """This chunk if it is pending (not locked)."""
        row = _PENDING.first(self.conn, {"b_job": job_id, "b_no": chunk_no})
        return Chunk(*row) if row else None

    def unblocked_by(self, job_id: str, chunk_no: int) -> list[tuple[str, int]]:
        """Once that chunk is done: the pending chunks that waited for it and may run now (chunks of its job
        waiting up to it and, when its job has nothing pending left, the later jobs of its procedure)."""
        pending = sa.select(C.chunk_no).where(C.job_id == job_id, C.status == "PENDING")
        if self.conn.execute(pending.where(C.chunk_no == chunk_no)).first() is not None:
            return []  # not done: nothing waits on it any less
        waited = sa.and_(C.job_id == job_id, C.after_chunk >= chunk_no)
        if self.conn.execute(pending.limit(1)).first() is None:
            procedure_id, created_at = self.conn.execute(
                sa.select(J.procedure_id, J.created_at).where(J.id == job_id)
            ).one()
            later = sa.select(J.id).where(
                J.procedure_id == procedure_id,
                sa.tuple_(J.created_at, J.id) > sa.tuple_(sa.literal(created_at), sa.literal(job_id)),
            )
            waited = sa.or_(waited, C.job_id.in_(later))
        rows = self.conn.execute(
            sa.select(C.job_id, C.chunk_no)
            .where(C.status == "PENDING", waited, ~waits_its_turn())
            .order_by(C.job_id, C.chunk_no)
        )
        return [(row.job_id, row.chunk_no) for row in rows]

    def job(self, job_id: str) -> Job:
        row = _JOB.first(self.conn, {"b_job": job_id})
        assert row is not None, job_id
        job = Job(*row)
        return replace(job, failed=bool(job.failed))  # SQLite's driver gives 0 or 1

    def pending_entries(self, chunk: Chunk, kind: str) -> list[tuple[int, Any]]:
        """The chunk's entries still to apply: (index, stored change) for updates, (index, item) for creates."""
        column = "change" if kind == "update" else "item"
        sql = (
            f"SELECT idx, {column} FROM job_entries WHERE job_id = {{0}} AND idx >= {{0}} AND idx < {{0}} "
            "AND status = 'NOT_STARTED' ORDER BY idx"
        )
        return driver_rows(
            self.conn,
            sql.format("?"),
            sql.format("%s"),
            [chunk.job_id, chunk.first_idx, chunk.end_idx],
            json_columns=[1],
        )

    def finish(self, chunk: Chunk, results: list[dict[str, Any]], now: int, *, failed: bool = False) -> str:
        """Record the entries' results, close the chunk and move the job on; the job's new status."""
        run(self.conn, mark_entries(self.conn, chunk.job_id, results))
        return self.close(chunk, results, now, failed=failed)

    def close(self, chunk: Chunk, results: list[dict[str, Any]], now: int, *, failed: bool = False) -> str:
        """``finish`` but for recording the entries' results (written apart, in the same transaction)."""
        _CHUNK_DONE.rows(self.conn, {"b_job": chunk.job_id, "b_no": chunk.chunk_no, "b_by": WORKER})
        succeeded = sum(r["b_status"] == "SUCCESS" for r in results)
        params = {"b_job": chunk.job_id, "b_ok": succeeded, "b_err": len(results) - succeeded}
        return str(_JOB_DONE.scalar(self.conn, {**params, "b_failed": failed, "b_now": now}))

    def attempt_failed(self, chunk: Chunk, now: int, retry_after_ms: int) -> None:
        self.conn.execute(
            t.job_chunks.update()
            .where(C.job_id == chunk.job_id, C.chunk_no == chunk.chunk_no)
            .values(attempts=C.attempts + 1, wake_at=now + retry_after_ms)
        )

    def due(self, now: int, lease_ms: int, limit: int = 1000) -> list[tuple[str, int]]:
        """Pending chunks whose wake-up lease expired (a worker died, a wake-up was lost); re-leased to now."""
        rows = self.conn.execute(
            sa.select(C.job_id, C.chunk_no)
            .where(C.status == "PENDING", C.wake_at <= now - lease_ms, ~waits_its_turn())
            .order_by(C.wake_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        if rows:
            self.conn.execute(
                t.job_chunks.update()
                .where(C.job_id == sa.bindparam("b_job"), C.chunk_no == sa.bindparam("b_no"))
                .values(wake_at=now),
                [{"b_job": j, "b_no": n} for j, n in rows],
            )
        return [(j, n) for j, n in rows]


@cache  # one expression, built once: its aliases' column collections are set up on first use
def waits_its_turn() -> Any:
    """SQL, on ``job_chunks``: the chunk must wait, because a chunk of its job up to its ``after_chunk`` is
    still pending, or because an earlier job of the same procedure still has a pending chunk (jobs are
    applied in the order they were submitted; only a job's own chunks overlap)."""
    earlier = t.job_chunks.alias("earlier")
    this_job, other_job, other_chunk = (
        t.jobs.alias("this_job"),
        t.jobs.alias("other_job"),
        t.job_chunks.alias("other_chunk"),
    )
    within = sa.exists().where(
        earlier.c.job_id == C.job_id, earlier.c.chunk_no <= C.after_chunk, earlier.c.status == "PENDING"
    )
    across = sa.exists().where(
        other_chunk.c.status == "PENDING",  # few rows, by ix_job_chunks_pending
        other_job.c.id == other_chunk.c.job_id,
        this_job.c.id == C.job_id,
        other_job.c.procedure_id == this_job.c.procedure_id,
        sa.tuple_(other_job.c.created_at, other_job.c.id) < sa.tuple_(this_job.c.created_at, this_job.c.id),
    )
    return sa.or_(within, across)


# the statements of every chunk, built and compiled once
_CHUNK = sa.select(C.job_id, C.chunk_no, C.first_idx, C.end_idx, C.attempts).where(
    C.status == "PENDING", C.job_id == sa.bindparam("b_job"), C.chunk_no == sa.bindparam("b_no")
)
_PENDING = Statement(_CHUNK)
_CLAIM = Statement(_CHUNK.where(~waits_its_turn()).with_for_update(skip_locked=True))
_JOB = Statement(sa.select(*t.jobs.c).where(J.id == sa.bindparam("b_job")))
_CHUNK_DONE = Statement(
    t.job_chunks.update()
    .where(C.job_id == sa.bindparam("b_job"), C.chunk_no == sa.bindparam("b_no"))
    .values(status="DONE", applied_by=sa.bindparam("b_by"))
)
_done, _failed = J.chunks_done + 1, J.failed | sa.bindparam("b_failed", type_=sa.Boolean)
_now = sa.bindparam("b_now", type_=sa.BigInteger)
_JOB_DONE = Statement(
    t.jobs.update()
    .where(J.id == sa.bindparam("b_job"))
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
