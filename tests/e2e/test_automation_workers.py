"""A runner killed with SIGKILL while its automation runs' calls are in flight: after the run lease, another
takes them up and calls again with the same Idempotency-Key; every run finishes exactly once, none is left
stuck. On PostgreSQL the runner is a ``procession worker`` beside ``procession serve``; on SQLite it is
``procession serve`` itself, started again on the same data folder. Each case has its own database, so that
no other runner can help."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from procession.bootstrap import Services, bootstrap
from procession.config import Settings
from procession.store import tables as t
from tests.conftest import Team, make_team, postgres_database
from tests.e2e.conftest import free_port, server_env, start, stop, wait_until_up
from tests.fakes.receiver import Hang, Receiver

LEADS = "/v1/ext/procedure/lead/process"
SLOW = "/slow"
RUNS = 50
RUN_LEASE = "2"  # seconds a runner holds the runs it took; its calls are cut at half of it


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Services]:
    """Services on a database of this test's own."""
    urls = [f"sqlite:///{tmp_path / 'runs.db'}"] if request.param == "sqlite" else postgres_database()
    for url in urls:
        svc = bootstrap(Settings(data_dir=tmp_path, database_url=url))
        yield svc
        svc.close()


def env_of(svc: Services) -> dict[str, str]:
    """The server's environment (task lease 1 s, the receiver allowed), runs held 2 s, no embedded worker on
    PostgreSQL."""
    return (
        server_env(svc)
        | {"PROCESSION_RUN_LEASE_SECONDS": RUN_LEASE}
        | ({} if svc.settings.is_sqlite else {"PROCESSION_EMBEDDED_WORKER": "false"})
    )


def wait(condition: Callable[[], Any], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def run_statuses(svc: Services, team: Team) -> Counter[str]:
    """The team's runs by status, read from the database (the runner may be down)."""
    with svc.engine.connect() as conn:
        return Counter(conn.scalars(sa.select(t.runs.c.status).where(t.runs.c.team_id == team.id)))


def all_runs(http: httpx.Client, automation_id: str) -> list[dict[str, Any]]:
    r = http.get("/v1/ext/runs", params={"automation": automation_id, "limit": 500})
    assert r.status_code == 200, r.text
    return r.json()["_data"]


def converted_leads(http: httpx.Client, receiver: Receiver) -> tuple[str, list[str], str]:
    """An automation calling the receiver when a lead is CONVERTED, ``RUNS`` leads, and a bulk job moving
    them all there (one save: one task holds all their runs). The automation's id, the leads', the job's."""
    automation = http.post(
        "/v1/admin/procedures/lead/automations",
        json={
            "name": "crm",
            "trigger": {"type": "state_reached", "state": "CONVERTED"},
            "steps": [
                {"name": "post", "type": "http", "url": f"{receiver.url}{SLOW}", "body": "{'id': process.id}"}
            ],
            "retry": {"maxAttempts": 5, "backoffSeconds": 0.05},
        },
    )
    assert automation.status_code == 201, automation.text
    leads = []
    for n in range(RUNS):
        r = http.post(LEADS, json={"data": {"score": n}})
        assert r.status_code == 201, r.text
        leads.append(r.json()["_data"]["id"])
    job = http.patch(LEADS, json={"processes": [{"id": pid, "state": "CONVERTED"} for pid in leads]})
    assert job.status_code == 202, job.text
    return automation.json()["_data"]["id"], leads, job.json()["_data"]["id"]


def test_a_runner_killed_mid_run_leaves_every_run_finished_exactly_once(fresh: Services) -> None:
    svc, sqlite = fresh, fresh.settings.is_sqlite
    team = make_team(svc)
    port, env = free_port(), env_of(svc)
    url = f"http://127.0.0.1:{port}"
    procs: dict[str, subprocess.Popen] = {}
    runner = "serve" if sqlite else "worker"
    with (
        Receiver() as receiver,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {team.key()}"}) as http,
    ):
        try:
            procs["serve"] = start("serve", env, port)
            if not sqlite:
                procs["worker"] = start("worker", env)
            wait_until_up(url)
            receiver.script(SLOW, *[Hang(10)] * RUNS)  # held until the runner is gone
            automation_id, leads, job_id = converted_leads(http, receiver)
            wait(lambda: receiver.count(SLOW) >= RUNS, "every run's first call")
            kill(procs[runner])
            assert run_statuses(svc, team) == {"RUNNING": RUNS}, (
                "the runner was killed with every run in flight"
            )
            wait(lambda: all(r.hung_up.is_set() for r in receiver.received(SLOW)), "the killed calls to end")

            procs[runner] = start(runner, env, port if sqlite else None)
            wait_until_up(url)
            assert http.get(f"/v1/ext/background-job/{job_id}").json()["_data"]["status"] == "COMPLETED"
            wait(
                lambda: {r["status"] for r in all_runs(http, automation_id)} == {"SUCCEEDED"},
                "every run to succeed",
            )
            runs = all_runs(http, automation_id)
            details = [http.get(f"/v1/ext/runs/{r['id']}").json()["_data"] for r in runs]
        finally:
            for proc in procs.values():
                stop(proc)
    assert run_statuses(svc, team) == {"SUCCEEDED": RUNS}  # none RUNNING, PENDING or WAITING left
    assert sorted(r["processId"] for r in runs) == sorted(leads)  # each process: exactly one run
    keys = receiver.keys(SLOW)
    mine = {f"run-{r['id']}-step-0" for r in runs}
    assert set(keys) == mine  # every run's key reached the receiver; no key that is not a run's
    assert all(n >= 2 for n in keys.values())  # called again, with the same key, after the kill
    assert all([a["outcome"] for a in d["attempts"]][-1:] == ["OK"] for d in details)
    assert all(sum(a["outcome"] == "OK" for a in d["attempts"]) == 1 for d in details)
