"""Applying chunks. ``run_chunk``, the one task handler: claim a pending chunk and apply it, all in one
transaction (so a worker killed at any moment leaves the chunk pending, and a chunk is never applied twice).
``run_pending``, the embedded runner's loop: the same, one chunk after another, each worked out while the
one before it is written and committed on another thread."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import sqlalchemy as sa

from procession.domain.procedure import Procedure
from procession.services.bulk import Plan, apply_chunk, plan_updates, write_updates
from procession.services.common import gc_paused, now_ms
from procession.services.processes import load_procedure
from procession.store import batch
from procession.store import tables as t
from procession.store.db import Statement, checkpoint
from procession.store.jobs import Chunk, Queue, waits_its_turn
from procession.store.uow import UnitOfWork

log = logging.getLogger("procession.engine")
MAX_ATTEMPTS = 5
RESTART_EVERY = 16  # chunks: on SQLite, the WAL is started over after about 25,000 frames (run_pending)
Found = tuple[str, int]  # (job id, chunk number)


def next_pending(engine: sa.Engine, but: Found | None = None) -> Found | None:
    """The oldest chunk that is pending, due and not waiting for an earlier one, other than ``but`` (not
    locked: a hint; ``run_chunk`` claims for real)."""
    with engine.connect() as conn:
        row = _NEXT.first(
            conn, {"b_now": now_ms(), "b_job": but[0] if but else "", "b_no": but[1] if but else -1}
        )
    return (row[0], row[1]) if row else None


def _team_of(engine: sa.Engine, job_id: str) -> str | None:
    with engine.connect() as conn:
        return str(team) if (team := _TEAM.scalar(conn, {"b_job": job_id})) else None


_c = t.job_chunks.c
_NEXT = Statement(
    sa.select(_c.job_id, _c.chunk_no)
    .where(
        _c.status == "PENDING",
        _c.wake_at <= sa.bindparam("b_now"),
        sa.or_(_c.job_id != sa.bindparam("b_job"), _c.chunk_no != sa.bindparam("b_no")),
        ~waits_its_turn(),
    )
    .order_by(_c.wake_at, _c.job_id, _c.chunk_no)
    .limit(1)
)
_TEAM = Statement(sa.select(t.jobs.c.team_id).where(t.jobs.c.id == sa.bindparam("b_job")))


def run_chunk(engine: sa.Engine, job_id: str, chunk_no: int) -> bool:
    """Apply chunk ``chunk_no`` of ``job_id`` if it is still pending; False if done, taken elsewhere, or not
    its turn yet (an earlier chunk naming the same processes is pending: whoever applies it wakes this)."""
    team_id = _team_of(engine, job_id)
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


# the embedded runner: one chunk commits while the next is worked out -----------------------------------


@dataclass
class Planned:
    """A chunk of updates worked out ahead, on what its reads saw."""

    team_id: str
    procedure: Procedure
    plan: Plan
    marks: list[batch.Write]  # the entries' results
    now: int


def plan_chunk(engine: sa.Engine, job_id: str, chunk_no: int) -> Planned | None:
    """A pending chunk of updates worked out on a reader's connection, without the write lock and writing
    nothing (on PostgreSQL its read locks the rows it reads until it ends); None if it is no such chunk
    (creates are applied by ``run_chunk``, in their savepoints)."""
    team_id = _team_of(engine, job_id)
    if team_id is None:
        return None
    with UnitOfWork(engine, team_id, write=False) as uow:
        queue = Queue(uow.conn)
        job, chunk = queue.job(job_id), queue.pending(job_id, chunk_no)
        if chunk is None or job.kind != "update" or job.status == "ABORTED":
            return None
        procedure, now = load_procedure(uow, job.procedure_id), now_ms()
        plan = plan_updates(uow, procedure, job, queue.pending_entries(chunk, job.kind), now)
        return Planned(team_id, procedure, plan, batch.mark_entries(uow.conn, job_id, plan.results), now)


@dataclass
class Written:
    """A chunk claimed for what was worked out for it, closed, and its job moved on, in ``uow``: its writes
    are still to run, and all of it to commit (``commit_written``)."""

    uow: UnitOfWork
    found: Found
    planned: Planned


def write_planned(engine: sa.Engine, found: Found, planned: Planned | None) -> Written | None:
    """Claim the chunk for what was worked out for it if that still holds (its procedure, its job, every
    entry a success), close it and move its job on; its writes are left to ``commit_written``. Otherwise,
    or if that fails, apply it as ``run_chunk`` does, afresh; None."""
    if planned is not None:
        uow = UnitOfWork(engine, planned.team_id).__enter__()  # closed by commit_written, on another thread
        try:
            queue = Queue(uow.conn)
            chunk, job = queue.claim(*found), queue.job(found[0])
            if (
                chunk is not None
                and job.status != "ABORTED"
                and load_procedure(uow, job.procedure_id).version == planned.procedure.version
                and not planned.plan.refused  # what refused an entry may have changed since: ask afresh
            ):
                queue.close(chunk, planned.plan.results, planned.now)
                return Written(uow, found, planned)
        except Exception as e:  # run_chunk tells what is wrong, if anything still is (and counts the attempt)
            log.info("chunk %s/%s: applied afresh: %r", *found, e)
        uow.__exit__(None, None, None)
    run_chunk(engine, *found)
    return None


def commit_written(engine: sa.Engine, written: Written) -> bool:
    """Run the writes of a chunk ``write_planned`` claimed, each process only if still at the version its plan
    read, and commit: True. If one changed since (or a key it gives was taken), or the commit fails (the
    disk, the connection), nothing of it is kept and the chunk is applied afresh, as ``run_chunk`` does (which
    records and raises its own failure): False."""
    uow, found = written.uow, written.found
    try:
        try:
            write_updates(uow, written.planned.plan)
            batch.run(uow.conn, written.planned.marks)
        except Exception as e:  # run_chunk tells what is wrong, if anything still is
            log.info("chunk %s/%s: applied afresh: %r", *found, e)
            committed = False
        else:
            try:
                uow.commit()
                committed = True
            except Exception:
                log.exception("chunk %s/%s: the commit failed", *found)
                committed = False
    finally:
        uow.__exit__(None, None, None)  # rolled back unless committed, and the write lock let go
    if not committed:
        run_chunk(engine, *found)
    return committed


def run_pending(engine: sa.Engine, committer: ThreadPoolExecutor, stop: threading.Event) -> bool:
    """Apply the pending chunks as they come due, as ``run_chunk`` does, until none is left or ``stop``;
    False if there was none. One overlap: while a chunk's writes run and commit on ``committer`` (built
    ahead, each one call into SQLite, which holds no Python lock: about as long as working a chunk out),
    the next is worked out (``plan_chunk``, its writes built too). That one is not waiting for the chunk in
    flight (``waits_its_turn``), so they name no process in common, and it is written only if what it read
    is unchanged (``write_planned``, ``commit_written``).

    On SQLite that reader is on the WAL whenever a chunk commits, so no commit could start the WAL over: it
    would grow by every chunk of the job (6 KB an entry, every page new to the file). Every
    ``RESTART_EVERY`` chunks, between working one out and writing it, the WAL is copied into the file with
    none of the runner's readers on it (``checkpoint``), so that chunk's commit starts it over (unless some
    other connection still reads an older part of it: then a later turn does)."""
    in_flight: tuple[Found, Future[bool]] | None = None
    chunks_found = 0

    def settle() -> None:  # the chunk in flight is committed, or else applied afresh (commit_written)
        nonlocal in_flight
        if in_flight is not None:
            committing, in_flight = in_flight[1], None
            committing.result()  # a failure to apply it afresh too is recorded: the runner's loop retries

    try:
        while not stop.is_set():
            found = next_pending(engine, but=in_flight[0] if in_flight else None)
            if found is None:
                if in_flight is None:
                    break
                settle()  # the chunks that waited for it may run now
                continue
            chunks_found += 1
            with gc_paused():  # and the chunk's objects are gone when it resumes: no collection scans them
                try:
                    planned = plan_chunk(engine, *found)
                except Exception as e:
                    log.info("chunk %s/%s: applied afresh: %r", *found, e)
                    planned = None
                settle()
                if chunks_found % RESTART_EVERY == 0:
                    checkpoint(engine)
                written = write_planned(engine, found, planned)
                del planned
            if written is not None:
                in_flight = found, committer.submit(commit_written, engine, written)
    finally:
        settle()
    return chunks_found > 0
