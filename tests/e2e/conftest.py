"""A real server (``procession serve``) on 127.0.0.1 per backend, and an HTTP client per test team."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from procession.bootstrap import Services, bootstrap
from procession.config import Settings
from tests.conftest import BACKENDS, Team, fresh_database, make_team, services_on, tenancy_kept

CHECKED: dict[str, Path] = {}  # the file every process started here checks tenancy into (``tenancy_checked``)
STARTED: list[str] = []  # the commands started with it


@pytest.fixture(scope="session", params=BACKENDS)
def e2e_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The end-to-end tests' own database per backend: the server's runner must not meet the integration
    tests' jobs."""
    yield from fresh_database(request.param, tmp_path_factory)


@pytest.fixture(scope="session")
def services(e2e_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    yield from services_on(e2e_database_url, tmp_path_factory)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session", autouse=True)
def tenancy_checked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every process started here checks tenancy into one file of the session, found clean at its end."""
    # each server (waited for until it is up) must have written its header: the check was on there; a
    # worker may be stopped before it gets that far
    CHECKED["file"] = tmp_path_factory.mktemp("tenancy") / "violations.txt"
    yield
    if STARTED:
        tenancy_kept(CHECKED.pop("file"), checkers=max(1, STARTED.count("serve")))


def checking() -> dict[str, str]:
    """The environment that turns the tenancy check on in a process started here."""
    return {"PROCESSION_CHECK_TENANCY": str(CHECKED["file"])} if "file" in CHECKED else {}


def start(command: str, env: dict[str, str], port: int | None = None) -> subprocess.Popen:
    """``procession <command>`` as a child process, checking tenancy."""
    args = [sys.executable, "-m", "procession.cli", command, *(["--port", str(port)] if port else [])]
    proc = subprocess.Popen(args, env={**os.environ, **checking(), **env})
    STARTED.append(command)
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_until_up(url: str) -> None:
    for _ in range(150):
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("the server did not start")


def server_env(services: Services) -> dict[str, str]:
    return {
        **checking(),
        "PROCESSION_DATABASE_URL": services.settings.url,
        "PROCESSION_DATA_DIR": str(services.settings.data_dir),
        "PROCESSION_MAX_BODY_BYTES": str(1024 * 1024),
        "PROCESSION_LEASE_SECONDS": "1",
        "PROCESSION_OUTBOUND_ALLOW": "127.0.0.1",
    }


@pytest.fixture(scope="session")
def server(services: Services) -> Iterator[str]:
    """The base URL of a running server on the session's database; on PostgreSQL a ``procession worker``
    runs beside it (on SQLite the server applies background work itself)."""
    port, env = free_port(), server_env(services)
    procs = [start("serve", env, port)]
    if not services.settings.is_sqlite:
        procs.append(start("worker", env))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url)
        yield url
    finally:
        for proc in procs:
            stop(proc)


@dataclass
class Api:
    """A team and an HTTP client holding its admin key."""

    team: Team
    http: httpx.Client
    url: str

    def client(self, key: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers)


@pytest.fixture
def api(server: str, services: Services) -> Iterator[Api]:
    team = make_team(services)
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {team.key()}"}) as http:
        yield Api(team, http, server)


@pytest.fixture(params=BACKENDS)
def own(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """Services on a database of the test's own, of each backend: what a test kills runs on it alone."""
    for url in fresh_database(request.param, tmp_path_factory):
        svc = bootstrap(Settings(data_dir=tmp_path_factory.mktemp("data"), database_url=url))
        yield svc
        svc.close()
