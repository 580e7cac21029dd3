"""The one task handler: claim a pending chunk and apply it, all in one transaction (so a worker killed at
any moment leaves the chunk pending, and a chunk is never applied twice)."""

from __future__ import annotations

import logging

import sqlalchemy as sa

from procession.services.bulk import apply_chunk
from procession.services.common import gc_paused, now_ms
from procession.store import tables as t
from procession.store.jobs import Chunk, Queue, waits_its_turn
from procession.store.uow import UnitOfWork

log = logging.getLogger("procession.engine")
MAX_ATTEMPTS = 5


def next_pending(engine: sa.Engine) -> tuple[str, int] | None:
    """The oldest chunk that is pending, due and not waiting for an earlier one (not locked: a hint;
    ``run_chunk`` claims for real)."""
    c = t.job_chunks.c
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(c.job_id, c.chunk_no)
            .where(c.status == "PENDING", c.wake_at <= now_ms(), ~waits_its_turn())
            .order_by(c.wake_at, c.job_id, c.chunk_no)
            .limit(1)
        ).first()
    return (row.job_id, row.chunk_no) if row else None


def run_chunk(engine: sa.Engine, job_id: str, chunk_no: int) -> bool:
    """Apply chunk ``chunk_no`` of ``job_id`` if it is still pending; False if done, taken elsewhere, or not
    its turn yet (an earlier chunk naming the same processes is pending: whoever applies it wakes this)."""
    with engine.connect() as conn:
        team_id = conn.scalar(sa.select(t.jobs.c.team_id).where(t.jobs.c.id == job_id))
    if team_id is None:
        return False
    chunk: Chunk | None = None
    try:
        with UnitOfWork(engine, team_id) as uow:
            queue = Queue(uow.conn)
            chunk = queue.claim(job_id, chunk_no)
            if chunk is None:
                return False
            now = now_ms()
            job = queue.job(job_id)
            with gc_paused():  # a thousand entries' short-lived objects: reference counting frees them
                results = (
                    []
                    if job.status == "ABORTED"
                    else apply_chunk(uow, job, queue.pending_entries(chunk, job.kind), now)
                )
            queue.finish(chunk, results, now)
            uow.commit()
        return True
    except Exception:
        log.exception("chunk %s/%s failed", job_id, chunk_no)
        if chunk is not None:
            _record_failure(engine, team_id, chunk)
        raise


def _record_failure(engine: sa.Engine, team_id: str, chunk: Chunk) -> None:
    """Back off and retry; after MAX_ATTEMPTS the chunk's entries end as ERROR and the job as FAILED."""
    with UnitOfWork(engine, team_id) as uow:
        queue = Queue(uow.conn)
        claimed = queue.claim(chunk.job_id, chunk.chunk_no)
        if claimed is None:
            return
        now = now_ms()
        if claimed.attempts + 1 >= MAX_ATTEMPTS:
            error = [{"code": "internal", "message": "the entry could not be applied; see the server log"}]
            results = [
                {"b_idx": idx, "b_status": "ERROR", "b_process": None, "b_error": error}
                for idx, _ in queue.pending_entries(claimed, queue.job(claimed.job_id).kind)
            ]
            queue.finish(claimed, results, now, failed=True)
        else:
            queue.attempt_failed(claimed, now, retry_after_ms=1000 * 2**claimed.attempts)
        uow.commit()
