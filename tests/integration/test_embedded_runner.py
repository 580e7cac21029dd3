"""The embedded runner (SQLite's, and PostgreSQL's when asked): one task's writes commit on its committer
thread while the next is worked out on its own; what was worked out is written only if it still holds."""

from __future__ import annotations

import gc
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa

from procession.bootstrap import Services
from procession.engine import embedded
from procession.engine.bulk import BULK_CHUNK
from procession.engine.embedded import EmbeddedRunner, plan, run_pending
from procession.engine.tasks import Kinds, run_task
from procession.services.commands import UpdateProcess
from procession.services.jobs import CHUNK, abort_job
from procession.services.processes import update_process
from procession.store import tables as t
from procession.store.sqlite import Checkpointer
from procession.store.tasks import Task
from procession.store.uow import UnitOfWork, UnitsOfWork
from procession.tuning import SWITCH_INTERVAL_S
from tests.conftest import Team, make_team, redefine
from tests.integration.bulk import create, drain, entries, job, read, submit, task_of


def on(team: Team) -> tuple[UnitsOfWork, Kinds]:
    return team.services.uows, team.services.kinds


def ahead(team: Team, items: list[dict]) -> tuple[str, Any]:
    """A one-chunk job, worked out ahead as the embedded runner does while the chunk before it commits."""
    j = submit(team, items)
    return j["id"], plan(team.services.uows, team.services.kinds, task_of(team, j["id"], 0))[1]


def as_planned(team: Team, job_id: str, planned: Any) -> bool:
    """Whether the chunk was written as worked out (False: applied afresh instead)."""
    afresh: list[Task] = []

    def run(uow: UnitOfWork, task: Task) -> None:
        afresh.append(task)
        BULK_CHUNK.run(uow, task)

    kinds = Kinds(replace(BULK_CHUNK, run=run))
    assert run_task(team.services.uows, kinds, task_of(team, job_id, 0), planned)
    return not afresh


def test_a_chunk_worked_out_ahead_is_written_only_if_what_it_read_is_unchanged(team: Team) -> None:
    """Written as worked out when nothing it read changed; applied afresh, under the write lock, when one
    of its processes was updated, its procedure was changed, a key it gives was taken or its job was
    aborted meanwhile: no update is lost, and every entry gets the result the fresh state gives."""
    a, b = create(team, {}), create(team, {})

    job_id, planned = ahead(team, [{"id": a["id"], "data": {"score": 1}}])
    assert as_planned(team, job_id, planned)
    assert (read(team, a["id"])["data"]["score"], read(team, a["id"])["version"]) == (1, 2)

    job_id, planned = ahead(team, [{"id": a["id"], "data": {"score": 2}}])
    # an update over the API meanwhile: the worked-out data lacks its city
    team.services.run(update_process, team.caller, "lead", (a["id"],), UpdateProcess(data={"city": "Paris"}))
    assert not as_planned(team, job_id, planned)
    after = read(team, a["id"])
    assert (after["data"]["score"], after["data"]["city"], after["version"]) == (2, "Paris", 4)

    job_id, planned = ahead(team, [{"id": b["id"], "data": {"lead_id": "TAKEN-1"}}])
    create(team, {"data": {"lead_id": "TAKEN-1"}})
    assert not as_planned(team, job_id, planned)
    assert [e["errors"][0]["code"] for e in entries(team, job_id)] == ["duplicate_primary_key"]

    job_id, planned = ahead(team, [{"id": b["id"], "data": {"score": 3}}])
    redefine(team, "lead", label="Leads, renamed")
    assert not as_planned(team, job_id, planned)
    assert job(team, job_id)["counts"]["SUCCESS"] == 1 and read(team, b["id"])["data"]["score"] == 3

    # entries refused on what the plan read: a key that names no process yet, a deleted process
    gone = create(team, {})
    team.services.run(update_process, team.caller, "lead", (gone["id"],), UpdateProcess(isDeleted=True))
    job_id, planned = ahead(
        team, [{"lead_id": "LATE-1", "data": {"score": 5}}, {"id": gone["id"], "data": {"score": 6}}]
    )
    assert [r["b_status"] for r in planned.results] == ["ERROR", "ERROR"]
    create(team, {"data": {"lead_id": "LATE-1"}})
    team.services.run(update_process, team.caller, "lead", (gone["id"],), UpdateProcess(isDeleted=False))
    assert not as_planned(team, job_id, planned)
    assert job(team, job_id)["counts"]["SUCCESS"] == 2 and read(team, gone["id"])["data"]["score"] == 6

    job_id, planned = ahead(team, [{"id": b["id"], "data": {"score": 4}}])
    team.services.run(abort_job, team.caller, job_id)
    assert not as_planned(team, job_id, planned)
    assert job(team, job_id)["counts"]["NOT_STARTED"] == 1 and read(team, b["id"])["data"]["score"] == 3


def test_the_embedded_runner_applies_chunks_in_turn_while_one_commits(team: Team) -> None:
    """Chunks naming the same process wait for the one in flight to commit; the others are worked out
    while it does. Every entry is applied once, in the order sent; a stopped runner starts nothing."""
    a, b, c = create(team, {}), create(team, {}), create(team, {})
    # chunks 0 and 2 name a; chunk 1 names b and c: worked out while chunk 0 commits
    j = submit(
        team,
        [{"id": a["id"], "data": {"score": i}} for i in range(1000)]
        + [{"id": p["id"], "data": {"score": i}} for i in range(500) for p in (b, c)]
        + [{"id": a["id"], "data": {"score": 1000 + i}} for i in range(500)],
    )
    with ThreadPoolExecutor(1) as committer:
        stopped = threading.Event()
        stopped.set()
        assert run_pending(*on(team), committer, stopped) is False
        assert job(team, j["id"])["counts"]["NOT_STARTED"] == 2500
        assert run_pending(*on(team), committer, threading.Event()) is True
        assert gc.isenabled()  # paused per chunk only
    drain(team)
    assert job(team, j["id"])["counts"]["SUCCESS"] == 2500
    assert (read(team, a["id"])["data"]["score"], read(team, a["id"])["version"]) == (1499, 1501)
    assert [(read(team, p["id"])["data"]["score"], read(team, p["id"])["version"]) for p in (b, c)] == [
        (499, 501),
        (499, 501),
    ]


def test_a_chunk_whose_commit_fails_is_applied_afresh(
    team: Team, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The embedded runner commits a chunk on its helper thread; if that commit fails (the disk, the
    connection), nothing of the chunk is kept and the runner applies it afresh: every entry once, in order."""
    a, b = create(team, {}), create(team, {})
    # chunk 0 names a, chunk 1 names b (worked out while chunk 0 commits), chunk 2 names a again
    j = submit(
        team,
        [{"id": a["id"], "data": {"score": i}} for i in range(1000)]
        + [{"id": b["id"], "data": {"score": i}} for i in range(1000)]
        + [{"id": a["id"], "data": {"score": 1000 + i}} for i in range(500)],
    )
    real, failed = UnitOfWork.commit, []

    def first_on_the_helper_fails(uow: UnitOfWork) -> None:
        on_helper = threading.current_thread().name.startswith("failing")
        if on_helper and uow.team_id == team.id and not failed:  # other tests' jobs may be pending too
            failed.append(uow)
            raise sa.exc.OperationalError("COMMIT", None, Exception("disk I/O error"))
        real(uow)

    monkeypatch.setattr(UnitOfWork, "commit", first_on_the_helper_fails)
    with ThreadPoolExecutor(1, thread_name_prefix="failing") as committer, caplog.at_level("INFO"):
        assert run_pending(*on(team), committer, threading.Event()) is True
    assert len(failed) == 1
    first = task_of(team, j["id"], 0)
    assert f"task {first}: run afresh" in caplog.text  # the first chunk, while 1 was worked out
    assert job(team, j["id"])["status"] == "COMPLETED"
    assert job(team, j["id"])["counts"]["SUCCESS"] == 2500
    assert (read(team, a["id"])["data"]["score"], read(team, a["id"])["version"]) == (1499, 1501)
    assert (read(team, b["id"])["data"]["score"], read(team, b["id"])["version"]) == (999, 1001)


def test_a_chunk_that_fails_again_afresh_counts_one_attempt_a_round(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If a chunk's writes fail on the helper thread and applying it afresh fails too, that failure is
    recorded once (the chunk backs off before its next attempt) and the runner stops to retry later."""
    p = create(team, {})
    j = submit(team, [{"id": p["id"], "data": {"score": 1}}])

    def broken(uow: UnitOfWork, task: Task, *plan: Any) -> None:
        if uow.team_id == team.id:  # other tests' jobs may be pending too
            raise RuntimeError("broken")
        (BULK_CHUNK.write if plan else BULK_CHUNK.run)(uow, task, *plan)  # type: ignore[misc]

    kinds = Kinds(replace(BULK_CHUNK, run=broken, write=broken))
    with ThreadPoolExecutor(1) as committer, pytest.raises(RuntimeError, match="broken"):
        run_pending(team.services.uows, kinds, committer, threading.Event())
    with team.services.engine.connect() as conn:
        attempts = sa.select(t.tasks.c.attempts).where(t.tasks.c.ref == j["id"])
        assert conn.scalar(attempts) == 1
    assert job(team, j["id"])["counts"]["NOT_STARTED"] == 1


def wal_frames(engine: sa.Engine) -> int:
    """The frames in the WAL since it was last started over (and all of them copied into the file now)."""
    with engine.connect() as conn:
        driver: Any = conn.connection.driver_connection
        busy, frames, copied = driver.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert (busy, copied) == (0, frames)
        return int(frames)


def test_the_embedded_runner_starts_the_sqlite_wal_over_as_it_goes(
    sqlite_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job's chunks are worked out while the one before commits, so a reader is on the WAL at every commit
    and no commit could start it over. Every ``RESTART_EVERY`` chunks the runner copies it with none of its
    readers on it, and the next commit writes it over from its start; without that (here nothing else copies
    the WAL: the ``Checkpointer`` waits an hour between turns) it holds every frame of the job."""
    team = make_team(sqlite_services)
    engine = sqlite_services.engine
    processes = [create(team, {}) for _ in range(16)]
    items = [  # chunk k names processes 2k and 2k + 1 only: none waits for another
        {"id": processes[2 * k + i % 2]["id"], "data": {"score": i}} for k in range(8) for i in range(1000)
    ]
    frames = {}
    checkpointer = Checkpointer(engine, interval=3600)  # as serve runs it: writers leave the WAL to it
    checkpointer.start()
    try:
        for every in (10**9, 2):
            monkeypatch.setattr(embedded, "RESTART_EVERY", every)
            wal_frames(engine)  # copied: the job's writes start it over
            j = submit(team, items)
            with ThreadPoolExecutor(1) as committer:
                assert run_pending(*on(team), committer, threading.Event()) is True
            frames[every] = wal_frames(engine)
            assert job(team, j["id"])["counts"]["SUCCESS"] == 8000
    finally:
        checkpointer.stop()
    assert frames[2] * 3 < frames[10**9], "the last chunk's frames against all of the job's"
    assert [read(team, p["id"])["version"] for p in processes] == [1001] * 16


def test_the_embedded_runner_applies_what_it_is_woken_for_and_switches_quickly_only_meanwhile(
    team: Team,
) -> None:
    """While it runs tasks, the process switches threads every 0.2 ms at most (``quick_switches``); idle or
    stopped, as often as it did before."""
    before = sys.getswitchinterval()
    p = create(team, {})
    seen: list[float] = []

    def run(uow: UnitOfWork, task: Task, *plan: Any) -> None:
        seen.append(sys.getswitchinterval())
        (BULK_CHUNK.write if plan else BULK_CHUNK.run)(uow, task, *plan)  # type: ignore[misc]

    kinds = Kinds(replace(BULK_CHUNK, run=run, write=run))
    runner = EmbeddedRunner(team.services.uows, kinds, poll_seconds=60)  # only a wake makes it look again
    runner.start()
    try:
        idle_by = time.monotonic() + 30  # once done with what earlier tests on this database left due
        while sys.getswitchinterval() != before:
            assert time.monotonic() < idle_by, "the runner never went idle"
            time.sleep(0.02)
        j = submit(team, [{"id": p["id"], "data": {"score": 7}}])
        runner.wake(CHUNK, j["id"])
        deadline = time.monotonic() + 30
        while job(team, j["id"])["status"] != "COMPLETED":
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        runner.stop()
    assert seen and all(abs(s - min(before, SWITCH_INTERVAL_S)) < 1e-9 for s in seen)
    assert sys.getswitchinterval() == before
    assert read(team, p["id"])["data"]["score"] == 7
