"""Shared fixtures: each backend (SQLite, PostgreSQL) once per session; a fresh team per test."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from procession.bootstrap import Services, bootstrap
from procession.config import Settings
from procession.services.commands import EntityInput, PodInput, ProcedureInput, UserInput
from procession.services.common import Caller
from procession.services.configuration import add_pod, add_user, define_entity, define_procedure
from procession.services.teams import create_key, create_team
from procession.services.templates import DEMO_PODS, DEMO_USERS, install_template
from procession.store import batch, statement, tenancy
from procession.store.uow import UnitOfWork

PG_SERVER = os.environ.get("PROCESSION_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
BACKENDS = ["sqlite", "postgresql"]


def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for this session; skipped (failed under CI) when there is no server."""
    admin_url = f"{PG_SERVER}/test"
    try:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            name = f"procession_test_{uuid.uuid4().hex[:10]}"
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    except sa.exc.OperationalError as e:
        message = f"PostgreSQL is not reachable at {admin_url}: {str(e).splitlines()[0]}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: the PostgreSQL half must run)")
        pytest.skip(message)
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def fresh_database(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a new, empty database of ``backend``."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'test.db'}"
    else:
        yield from postgres_database()


TESTS = str(Path(__file__).parent) + os.sep
# what a statement passes through between its sender and the tenancy check
PLUMBING = (str(Path(sa.__file__).parent) + os.sep, *(str(m.__file__) for m in (statement, batch, tenancy)))


def sent_by_tests() -> bool:
    """Whether the statement being checked was sent by the tests' own code rather than the application's."""
    # the tests read tables directly, across teams by nature; what the application sends is checked
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(PLUMBING):
        frame = frame.f_back
    return frame is not None and frame.f_code.co_filename.startswith(TESTS)


def tenancy_kept(path: Path, *, checkers: int = 1) -> None:
    """At least ``checkers`` processes checked tenancy into ``path`` (a header each); none found a thing."""
    assert path.exists(), f"the tenancy check was never on: {path} does not exist"
    lines = path.read_text().splitlines()
    found = [line for line in lines if not line.startswith(tenancy.HEADER)]
    assert not found, "statements not scoped to their team:\n" + "\n".join(found)
    assert len(lines) >= checkers, f"{checkers} processes should have checked tenancy, {len(lines)} did"


def services_on(url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """Services on the database at ``url``, migrated, checking tenancy (the tests' own reads excused)."""
    data = tmp_path_factory.mktemp("data")
    checked = tmp_path_factory.mktemp("tenancy") / "violations.txt"
    svc = bootstrap(  # automations may call the tests' local receivers, and nothing else private
        Settings(data_dir=data, database_url=url, check_tenancy=checked, outbound_allow="127.0.0.1")
    )
    auditor = tenancy.auditor_of(svc.engine)
    assert auditor is not None
    auditor.excuse = sent_by_tests
    yield svc
    svc.close()
    tenancy_kept(checked)


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from fresh_database(request.param, tmp_path_factory)


@pytest.fixture(scope="session")
def services(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    yield from services_on(database_url, tmp_path_factory)


@dataclass
class Team:
    """A fresh team with every template, the demo's users and pods, and an admin caller."""

    id: str
    slug: str
    services: Services
    caller: Caller

    def uow(self) -> UnitOfWork:
        return self.services.uows.write(self.id)

    def key(self, role: str = "admin", user: str | None = "admin") -> str:
        return self.services.run(create_key, self.id, role=role, username=user)


def make_team(services: Services) -> Team:
    slug = f"t{uuid.uuid4().hex[:12]}"
    team_id = create_team(services.engine, slug)
    users = [{k: v for k, v in u.items() if k != "id"} for u in DEMO_USERS]  # ids are global: fresh per team
    for user in users:
        services.run(add_user, team_id, UserInput.model_validate(user))
    for pod in DEMO_PODS:
        services.run(add_pod, team_id, PodInput.model_validate(pod))
    services.run(install_template, team_id, "all")
    with services.uows.read(team_id) as uow:
        admin_id = uow.users.id_of("admin")
    return Team(team_id, slug, services, Caller(team_id, "admin", admin_id))


@pytest.fixture(scope="module")
def sqlite_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """Services on a SQLite file of this module's own, whatever the session's backend."""
    for url in fresh_database("sqlite", tmp_path_factory):
        yield from services_on(url, tmp_path_factory)


@pytest.fixture
def team(services: Services) -> Team:
    return make_team(services)


@pytest.fixture
def team_factory(services: Services) -> Callable[[], Team]:
    return lambda: make_team(services)


@pytest.fixture
def tmp_data(tmp_path: Path) -> Path:
    return tmp_path


def redefine(team: Team, ref: str, **changes: str) -> None:
    """Save procedure or entity ``ref`` again with ``changes`` to its definition."""
    with team.uow() as uow:
        schema, model, define = (
            (uow.entities.get(ref), EntityInput, define_entity)
            if ref == "customer"
            else (uow.procedures.get(ref), ProcedureInput, define_procedure)
        )
    assert schema is not None
    body = {k: v for k, v in schema.to_dict().items() if k in model.model_fields} | changes
    body["attributes"] = [{k: v for k, v in a.items() if k != "procedure"} for a in body["attributes"]]
    team.services.run(define, team.id, model.model_validate(body), ref=ref)  # type: ignore[arg-type]
