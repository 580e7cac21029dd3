"""Request writes through ``Services.write``: on SQLite grouped in one transaction (a savepoint each), on
PostgreSQL one transaction each; either way each call keeps its own outcome."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from procession.bootstrap import Services
from procession.domain.errors import Conflict
from procession.services.commands import CreateProcess
from procession.services.processes import create_in
from procession.store import tables as t
from procession.store.sqlite import write_lock
from procession.store.uow import UnitOfWork, UnitsOfWork
from tests.conftest import Team, make_team


class Boom(Exception):
    pass


def test_concurrent_writes_keep_their_own_outcomes(team: Team) -> None:
    """Twelve creates at once: two fail after writing (a duplicate primary key, an error after the insert),
    and only their own changes are undone; the others are committed and answered with their process."""
    seen: list[UnitOfWork] = []

    def create(body: dict[str, Any], fail_after: bool = False) -> Any:
        def work(uow: UnitOfWork) -> dict[str, Any]:
            seen.append(uow)
            out = create_in(uow, team.caller, "lead", CreateProcess.model_validate(body))
            if fail_after:
                raise Boom(out["id"])
            uow.commit()
            return out

        return team.services.write(in_one(team, work))

    taken = asyncio.run(create({"data": {"lead_id": "LEAD-1"}}))

    async def main() -> list[Any]:
        calls = [create({"data": {"score": i}}) for i in range(10)]
        calls.insert(3, create({"data": {"score": 99}}, fail_after=True))
        calls.insert(7, create({"data": {"lead_id": "LEAD-1"}}))  # the primary key is taken
        return await asyncio.gather(*calls, return_exceptions=True)

    seen.clear()
    outcomes = asyncio.run(main())
    boom, duplicate = outcomes.pop(3), outcomes.pop(6)
    assert isinstance(boom, Boom) and isinstance(duplicate, Conflict)
    assert [o["data"]["score"] for o in outcomes] == list(range(10))
    with team.uow() as uow:
        assert all(uow.processes.get(o["id"]) is not None for o in outcomes)
        assert uow.processes.get(str(boom)) is None  # inserted, then undone with its savepoint
        count = sa.select(sa.func.count()).select_from(t.processes).where(t.processes.c.team_id == team.id)
        assert uow.conn.execute(count).scalar_one() == 11 and uow.processes.get(taken["id"]) is not None
    connections = {id(uow.conn) for uow in seen}
    if write_lock(team.services.engine) is not None:  # SQLite: one transaction for all twelve
        assert len(connections) == 1 and all(uow.within is not None for uow in seen)
    else:  # PostgreSQL: each its own
        assert all(uow.within is None for uow in seen)


def _write_while_held(team: Team, hold: Callable[[], None], release: Callable[[], None]) -> None:
    """Hold the file with ``hold``, write, and ``release`` 0.3 s later: the write waits that long, the event
    loop ticks all along (at least 10 times), and the write is then done."""

    async def main() -> tuple[int, dict[str, Any]]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        hold()
        asyncio.get_running_loop().call_later(0.3, release)
        started = time.perf_counter()
        out = await team.services.write(in_one(team, lambda uow: _create(uow, team)))
        assert time.perf_counter() - started >= 0.25  # it did wait
        ticker.cancel()
        return ticks, out

    ticks, out = asyncio.run(main())
    assert ticks >= 10  # the loop ran all along
    with team.uow() as uow:
        assert uow.processes.get(out["id"]) is not None


def test_a_write_waits_for_the_file_lock_off_the_event_loop(sqlite_services: Services) -> None:
    """While another writer of the process holds SQLite's write lock, a request's write waits on a thread
    of its own: the event loop keeps running, and the write is done once the lock is free."""
    team = make_team(sqlite_services)
    lock = write_lock(team.services.engine)
    assert lock is not None
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with lock:
            held.set()
            release.wait(5)

    def hold() -> None:
        threading.Thread(target=holder).start()
        held.wait(5)

    _write_while_held(team, hold, release.set)


def in_one(team: Team, work: Callable[[UnitOfWork], Any]) -> Callable[[UnitsOfWork], Any]:
    """``work(uow)`` as a use case: in one unit of work of the team's (which ``work`` commits)."""

    def use_case(uows: UnitsOfWork) -> Any:
        with uows.write(team.id) as uow:
            return work(uow)

    return use_case


def _create(uow: UnitOfWork, team: Team) -> dict[str, Any]:
    out = create_in(uow, team.caller, "lead", CreateProcess())
    uow.commit()
    return out


def test_a_call_can_open_several_units_of_work(team: Team) -> None:
    """A use case may open several units of work (the idempotency replay does): each is its own unit."""

    def work(uows: UnitsOfWork) -> list[str]:
        with uows.write(team.id) as first:
            kept = _create(first, team)["id"]
        with uows.write(team.id) as second:
            dropped = create_in(second, team.caller, "lead", CreateProcess())["id"]  # not committed
        return [kept, dropped]

    kept, dropped = asyncio.run(team.services.write(work))
    with team.uow() as uow:
        assert uow.processes.get(kept) is not None and uow.processes.get(dropped) is None


def test_a_group_whose_transaction_is_lost_reports_every_call_failed(sqlite_services: Services) -> None:
    """If SQLite rolls the whole transaction back (disk full, I/O error), no call of the group may be
    answered as done: the ones that ran are lost, the rest are not run."""
    team = make_team(sqlite_services)
    created: list[str] = []

    def good(uow: UnitOfWork) -> dict[str, Any]:
        out = _create(uow, team)
        created.append(out["id"])
        return out

    def fatal(uow: UnitOfWork) -> None:
        uow.conn.connection.driver_connection.execute("ROLLBACK")  # type: ignore[union-attr]
        raise Boom("the file went away")

    async def main() -> list[Any]:
        calls = [team.services.write(in_one(team, w)) for w in (good, fatal, good)]
        return await asyncio.gather(*calls, return_exceptions=True)

    outcomes = asyncio.run(main())
    assert all(isinstance(o, Exception) for o in outcomes)
    assert len(created) == 1  # the third never ran
    with team.uow() as uow:
        assert uow.processes.get(created[0]) is None


def test_a_write_waits_for_another_process_off_the_event_loop(sqlite_services: Services) -> None:
    """Another process writing to the file (here: a connection outside this process's lock) holds SQLite's
    own lock: the group finds the file busy at once and waits on its thread, the event loop runs on."""
    team = make_team(sqlite_services)
    other = sqlite3.connect(str(team.services.engine.url.database), isolation_level=None)
    try:
        _write_while_held(team, lambda: other.execute("BEGIN IMMEDIATE"), lambda: other.execute("COMMIT"))
    finally:
        other.close()
