"""The tenancy check (``PROCESSION_CHECK_TENANCY``) on each database, through SQLAlchemy and to the driver."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from procession.bootstrap import Services, bootstrap
from procession.config import Settings
from procession.store import tables as t
from procession.store import tenancy
from procession.store.db import make_engine
from procession.store.repositories.base import ID, TEAM
from procession.store.repositories.teams import key_by_hash
from procession.store.statement import ACROSS_TEAMS, Statement
from procession.store.tenancy import TenancyViolation
from tests.conftest import Team

P = t.processes.c
UNSCOPED = sa.select(P.id).where(P.id == ID)
SCOPED = sa.select(P.id).where(P.team_id == TEAM, P.id == ID)


@pytest.fixture
def strict(services: Services, tmp_path: Path) -> Iterator[Services]:
    """Services on the session's database checking tenancy, nothing excused, into a file of their own."""
    settings = Settings(
        data_dir=services.settings.data_dir,
        database_url=services.settings.url,
        check_tenancy=tmp_path / "violations.txt",
    )
    svc = bootstrap(settings, run_migrations=False)
    yield svc
    svc.close()


def recorded(svc: Services) -> list[str]:
    """The violations written so far."""
    assert svc.settings.check_tenancy is not None
    lines = svc.settings.check_tenancy.read_text().splitlines()
    assert lines[0].startswith(tenancy.HEADER)
    return lines[1:]


def through_sqlalchemy(conn: sa.Connection, team_id: str) -> None:
    conn.execute(UNSCOPED if team_id == "" else SCOPED, {"b_id": "x", "b_team": team_id})


def to_the_driver(conn: sa.Connection, team_id: str) -> None:
    Statement(UNSCOPED if team_id == "" else SCOPED).first(conn, {"b_id": "x", "b_team": team_id})


WAYS = [through_sqlalchemy, to_the_driver]


@pytest.mark.parametrize("send", WAYS)
def test_an_unscoped_statement_in_a_unit_of_work_fails_and_is_recorded(
    strict: Services, team: Team, send: Callable[[sa.Connection, str], None]
) -> None:
    with (
        strict.uows.read(team.id) as uow,
        pytest.raises(TenancyViolation, match="processes: names no team_id"),
    ):
        send(uow.conn, "")
    [line] = recorded(strict)
    assert line.startswith("processes: names no team_id: SELECT processes.id FROM processes WHERE")


@pytest.mark.parametrize("send", WAYS)
def test_a_statement_scoped_to_another_team_fails(
    strict: Services, team_factory: Callable[[], Team], send: Callable[[sa.Connection, str], None]
) -> None:
    a, b = team_factory(), team_factory()
    with (
        strict.uows.write(a.id) as uow,
        pytest.raises(TenancyViolation, match=f"the team of its unit of work \\({a.id}\\)"),
    ):
        send(uow.conn, b.id)
    assert len(recorded(strict)) == 1
    with strict.uows.write(a.id) as uow:  # its own team's passes, and so does any team's once it is over
        send(uow.conn, a.id)
    with strict.engine.connect() as conn:
        send(conn, b.id)
    assert len(recorded(strict)) == 1


def test_scoped_and_marked_statements_pass(strict: Services, team: Team) -> None:
    with strict.uows.write(team.id) as uow:
        through_sqlalchemy(uow.conn, team.id)
        to_the_driver(uow.conn, team.id)
        uow.conn.execute(UNSCOPED.prefix_with(ACROSS_TEAMS), {"b_id": "x"})
        Statement(UNSCOPED.prefix_with(ACROSS_TEAMS)).first(uow.conn, {"b_id": "x"})
        uow.conn.execute(sa.select(t.teams.c.id).where(t.teams.c.slug == "nobody"))  # not a team's table
        uow.conn.execute(sa.select(sa.literal(1)))
        assert not uow.processes.exists("x") and uow.procedures.get("lead") is not None
        uow.commit()
    assert key_by_hash(strict.engine, "no such hash") is None  # marked, read on its own connection
    assert recorded(strict) == []


def test_a_statement_read_on_its_own_connection_is_checked_too(strict: Services) -> None:
    with pytest.raises(TenancyViolation):
        Statement(UNSCOPED).first_on_own(strict.engine, {"b_id": "x"})
    assert len(recorded(strict)) == 1


def test_an_engine_made_without_the_setting_is_not_checked(services: Services) -> None:
    assert Settings.model_fields["check_tenancy"].default is None
    engine = make_engine(services.settings.url)
    try:
        assert tenancy.auditor_of(engine) is None
        with engine.connect() as conn:
            through_sqlalchemy(conn, "")
            to_the_driver(conn, "")
    finally:
        engine.dispose()
