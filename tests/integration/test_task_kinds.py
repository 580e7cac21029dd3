"""The task engine with a second kind beside bulk chunks, on SQLite and PostgreSQL: a task is claimed and run
once, a failed attempt is rolled back, recorded and due again after a back-off, its last one gives it up;
the embedded runner runs it; leases wake each due task once; and a worker killed mid-task loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from procession.bootstrap import Services, bootstrap
from procession.config import Settings
from procession.domain.clock import now_ms
from procession.domain.process import ProcessChange
from procession.engine.bulk import BULK_CHUNK
from procession.engine.embedded import EmbeddedRunner
from procession.engine.tasks import BACKOFF_MS, Kinds, backoff_ms, run_task
from procession.services.commands import CreateProcess
from procession.services.processes import create_in, load_procedure
from procession.store import tables as t
from procession.store.repositories.retention import RETENTION
from procession.store.tasks import WORKER, NewTask, Queue, Task
from procession.store.uow import UnitOfWork, UnitsOfWork
from tests.conftest import Team, fresh_database, make_team
from tests.e2e.conftest import stop
from tests.integration.bulk import read
from tests.integration.kind_worker import TOUCH, TOUCH_KIND, touch

ROOT = Path(__file__).parents[2]
KINDS = Kinds(TOUCH_KIND)
LEASE_MS = 1000


@pytest.fixture
def lead(team: Team) -> Iterator[str]:
    """A lead of the team to touch; the team's tasks go afterwards, so no other test's runner meets them."""
    with team.uow() as uow:
        process_id = create_in(uow, team.caller, "lead", CreateProcess())["id"]
        uow.commit()
    yield process_id
    with team.services.engine.begin() as conn:
        conn.execute(sa.delete(t.tasks).where(t.tasks.c.team_id == team.id, t.tasks.c.kind.like("test.%")))


def add(
    team: Team, ref: str, *tasks: NewTask, kind: str = TOUCH, lane: str | None = None, at: int = 0
) -> list[int]:
    """Add ``tasks`` (by default one for ``ref``), due at ``at`` (now by default): their ids."""
    with team.uow() as uow:
        uow.tasks.add(kind, list(tasks) or [NewTask(ref=ref)], lane=lane, now=at or now_ms())
        uow.commit()
        return [row["id"] for row in uow.tasks.of(kind, ref)]


def state(team: Team, task_id: int) -> dict[str, Any]:
    with team.services.engine.connect() as conn:
        return dict(conn.execute(sa.select(t.tasks).where(t.tasks.c.id == task_id)).one()._mapping)


def touched(team: Team, process_id: str) -> tuple[int | None, int]:
    """The lead's score and how many updates it has seen."""
    with team.services.uows.read(team.id) as uow:
        procedure, process = load_procedure(uow, "lead"), uow.processes.get(process_id)
        assert process is not None
        events = uow.events.for_process(process_id)
    score = process.data.get(procedure.by_short["score"].id)
    return score, sum(e.type == "process.updated" for e in events)


def failing(max_attempts: int = 5, give_up: Callable[[UnitOfWork, Task, str], None] | None = None) -> Kinds:
    """The kind, made to touch its lead and then fail every attempt."""

    def run(uow: UnitOfWork, task: Task) -> None:
        touch(uow, task)
        raise RuntimeError("boom")

    return Kinds(
        replace(TOUCH_KIND, run=run, max_attempts=max_attempts, give_up=give_up or TOUCH_KIND.give_up)
    )


def wait(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_task_of_a_second_kind_is_claimed_and_run_once(team: Team, lead: str) -> None:
    """Of two runs of one task, one claims, runs and closes it DONE; the other and later ones get False."""
    [task_id] = add(team, lead)
    started, release = threading.Event(), threading.Event()

    def held(uow: UnitOfWork, task: Task) -> None:
        touch(uow, task)
        started.set()
        assert release.wait(30)

    runs: list[bool] = []
    first = threading.Thread(
        target=lambda: runs.append(
            run_task(team.services.uows, Kinds(replace(TOUCH_KIND, run=held)), task_id)
        )
    )
    first.start()
    assert started.wait(30)
    second = threading.Thread(target=lambda: runs.append(run_task(team.services.uows, KINDS, task_id)))
    second.start()  # PostgreSQL: skips the locked row; SQLite: waits for the writer, then finds it done
    time.sleep(0.2)
    release.set()
    first.join(30)
    second.join(30)
    assert sorted(runs) == [False, True]
    assert not run_task(team.services.uows, KINDS, task_id)
    row = state(team, task_id)
    assert (row["status"], row["attempts"], row["done_by"], row["last_error"]) == ("DONE", 0, WORKER, None)
    assert touched(team, lead) == (1, 1)


def test_a_failed_attempt_is_rolled_back_recorded_and_due_after_a_jittered_backoff(
    team: Team, lead: str
) -> None:
    """A failed attempt is undone and recorded; the task is due again after 1 s, then 2 s, +/- a quarter."""
    [task_id] = add(team, lead)
    for attempt in (1, 2):
        before = now_ms()
        with pytest.raises(RuntimeError, match="boom"):
            run_task(team.services.uows, failing(), task_id)
        after, row = now_ms(), state(team, task_id)
        base = BACKOFF_MS * 2 ** (attempt - 1)
        assert (row["status"], row["attempts"], row["last_error"]) == (
            "PENDING",
            attempt,
            "RuntimeError: boom",
        )
        assert before + 0.75 * base <= row["wake_at"] <= after + 1.25 * base
        assert row["lease_until"] is None
        with team.services.engine.begin() as conn:
            assert Queue(conn).lease_of(TOUCH, lead, after, LEASE_MS) == []  # not due yet
            assert Queue(conn).lease_of(TOUCH, lead, row["wake_at"], LEASE_MS) == [task_id]
    assert touched(team, lead) == (None, 0)


def test_the_backoff_doubles_per_attempt_give_or_take_a_quarter() -> None:
    """backoff_ms(n) lies within [0.75, 1.25] x 1 s x 2^(n-1), and spreads over that range."""
    for attempt in range(1, 6):
        base = BACKOFF_MS * 2 ** (attempt - 1)
        waits = [backoff_ms(attempt) for _ in range(2000)]
        assert 0.75 * base - 1 <= min(waits) < 0.8 * base
        assert 1.2 * base < max(waits) <= 1.25 * base


def test_after_its_last_attempt_a_task_is_failed_and_its_kind_gives_it_up(team: Team, lead: str) -> None:
    """After its kind's last attempt a task is FAILED, and give_up ran in that transaction."""
    given_up: list[str] = []

    def give_up(uow: UnitOfWork, task: Task, error: str) -> None:
        given_up.append(error)
        procedure = load_procedure(uow, "lead")
        process = uow.processes.get(task.ref)
        assert process is not None
        change = ProcessChange(data={procedure.by_short["city"].id: "given up"})
        uow.processes.save(procedure, process, process.apply(procedure, change, now=now_ms()), actor=None)

    [task_id] = add(team, lead)
    kinds = failing(max_attempts=2, give_up=give_up)
    for _ in range(2):
        with pytest.raises(RuntimeError):
            run_task(team.services.uows, kinds, task_id)
    row = state(team, task_id)
    assert (row["status"], row["attempts"]) == ("FAILED", 2)  # every attempt counted, the last too
    assert (row["last_error"], row["done_by"]) == ("RuntimeError: boom", WORKER)
    assert given_up == ["RuntimeError: boom"]
    assert not run_task(team.services.uows, kinds, task_id)
    assert read(team, lead)["data"]["city"] == "given up"
    assert touched(team, lead) == (None, 1)  # give_up's update alone


def test_the_embedded_runner_runs_a_task_of_any_kind_it_is_woken_for(team: Team, lead: str) -> None:
    """The embedded runner, woken by the commit that adds a task of any kind, runs it."""
    uows = UnitsOfWork(team.services.engine)
    every = Kinds(
        BULK_CHUNK, TOUCH_KIND, team.services.kinds[RETENTION]
    )  # the teams' periodic work is due too
    runner = EmbeddedRunner(uows, every, poll_seconds=60)
    uows.waker = runner
    runner.start()
    try:
        time.sleep(0.2)  # idle: waiting for a wake-up
        with uows.write(team.id) as uow:
            uow.tasks.add(TOUCH, [NewTask(ref=lead)], now=now_ms())
            uow.commit()
        [task_id] = [row["id"] for row in _tasks_of(team, lead)]
        wait(lambda: state(team, task_id)["status"] == "DONE", timeout=30)
    finally:
        runner.stop()
    assert state(team, task_id)["done_by"] == WORKER
    assert touched(team, lead) == (1, 1)


def _tasks_of(team: Team, ref: str) -> list[dict[str, Any]]:
    with team.services.uows.read(team.id) as uow:
        return uow.tasks.of(TOUCH, ref)


def test_a_lease_wakes_each_due_task_once_until_it_runs_out(team: Team, lead: str) -> None:
    """lease_of and lease_due return the due tasks, and none of them again until their lease runs out."""
    now = now_ms()
    due = add(team, lead, NewTask(ref=lead, part=0), NewTask(ref=lead, part=1), at=now)
    later = add(team, lead, NewTask(ref=lead, part=2), at=now + 60_000)[2:]
    with team.services.engine.begin() as conn:
        queue = Queue(conn)
        assert queue.lease_of(TOUCH, lead, now, LEASE_MS) == due
        assert queue.lease_of(TOUCH, lead, now, LEASE_MS) == []
        assert queue.lease_of(TOUCH, lead, now + LEASE_MS - 1, LEASE_MS) == []
        woken: list[int] = []
        while batch := queue.lease_due(now + LEASE_MS, LEASE_MS):  # every due task, this team's or not
            woken += batch
        assert set(due) <= set(woken) and not set(later) & set(woken)
        assert len(woken) == len(set(woken))
        assert not set(due) & set(queue.lease_due(now + 2 * LEASE_MS - 1, LEASE_MS))


def test_a_lane_holds_a_task_back_until_the_one_it_waits_for_is_done(team: Team, lead: str) -> None:
    """A lane's task waits for the one before it; once that is done, lease_lane returns it, once."""
    first, second = add(team, lead, NewTask(ref=lead, part=0), NewTask(ref=lead, part=1, after=0), lane=lead)
    uows, now = team.services.uows, now_ms()
    with team.services.engine.begin() as conn:
        assert Queue(conn).lease_of(TOUCH, lead, now, LEASE_MS) == [first]
        assert Queue(conn).lease_lane(first, now, LEASE_MS) == []
    assert not run_task(uows, KINDS, second)  # waits its turn
    assert run_task(uows, KINDS, first)
    with team.services.engine.begin() as conn:
        assert Queue(conn).lease_lane(first, now, LEASE_MS) == [second]
        assert Queue(conn).lease_lane(first, now, LEASE_MS) == []
    assert run_task(uows, KINDS, second)
    assert touched(team, lead) == (2, 2)


# --- a worker killed while it runs a task ----------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def own(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> Iterator[Services]:
    """Services on a database of this test's own, so that only its workers run its tasks."""
    for url in fresh_database(request.param, tmp_path_factory):
        svc = bootstrap(Settings(data_dir=tmp_path / "data", database_url=url))
        yield svc
        svc.close()


def start_worker(svc: Services) -> subprocess.Popen:
    env = {
        "PROCESSION_DATABASE_URL": svc.settings.url,
        "PROCESSION_DATA_DIR": str(svc.settings.data_dir),
        "PROCESSION_LEASE_SECONDS": "1",
    }
    args = [sys.executable, "-m", "tests.integration.kind_worker"]
    return subprocess.Popen(args, cwd=ROOT, env={**os.environ, **env})


def test_a_task_whose_worker_was_killed_runs_again_and_takes_effect_once(
    own: Services, tmp_path: Path
) -> None:
    """A task whose worker was SIGKILLed mid-run is run by the next worker, its effect applied once."""
    team = make_team(own)
    with team.uow() as uow:
        lead = create_in(uow, team.caller, "lead", CreateProcess())["id"]
        uow.commit()
    block, running = tmp_path / "block", tmp_path / "running"
    block.touch()
    [task_id] = add(team, lead, NewTask(ref=lead, args={"block": str(block), "running": str(running)}))
    first = start_worker(own)
    try:
        wait(running.exists)
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        stop(first)
    assert running.read_text() == str(first.pid)
    row = state(team, task_id)
    assert (row["status"], row["attempts"]) == ("PENDING", 0)
    assert touched(team, lead) == (None, 0)  # the killed attempt's write is gone
    block.unlink()
    second = start_worker(own)
    try:
        wait(lambda: state(team, task_id)["status"] == "DONE")
    finally:
        stop(second)
    row = state(team, task_id)
    assert (row["attempts"], row["done_by"].rsplit(":", 1)[1]) == (0, str(second.pid))
    assert touched(team, lead) == (1, 1)
