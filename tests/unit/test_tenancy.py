"""The tenancy check's rule on statement texts and parameters, and that off it installs nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from procession.store.batch import OF_TEAM
from procession.store.tenancy import binds, unscoped


@pytest.mark.parametrize(
    ("sql", "verdict"),
    [
        ("SELECT processes.id FROM processes WHERE processes.id = ?", ("processes", False)),
        ("SELECT id FROM processes WHERE team_id = ? AND id = ?", ("processes", True)),
        ("select p.id from processes as p join events on events.team_id = p.team_id", ("processes", True)),
        ("SELECT team_id FROM tasks WHERE id = ?", ("tasks", False)),  # named, but it scopes nothing
        ("UPDATE jobs SET team_id = ? WHERE id = ?", ("jobs", False)),
        ("INSERT INTO events (team_id, process_id) VALUES (?, ?)", ("events", True)),
        ("INSERT INTO events (process_id) SELECT team_id FROM x", ("events", False)),
        ("SELECT idx FROM job_entries WHERE job_id = ? AND " + OF_TEAM.format("?"), ("job_entries", True)),
        ("SELECT /* all teams */ id FROM tasks WHERE id = ?", (None, True)),
        ("SELECT nextval(pg_get_serial_sequence('tasks', 'id'))", (None, True)),
        ('PRAGMA main.table_xinfo("api_keys")', (None, True)),
        ("SELECT id FROM teams WHERE slug = ?", (None, True)),
        ("SELECT * FROM procrastinate_jobs WHERE id = %s", (None, True)),
        ("SAVEPOINT uow", (None, True)),
    ],
)
def test_a_statement_on_a_team_s_table_names_team_id_in_a_condition_or_an_insert(
    sql: str, verdict: tuple[str | None, bool]
) -> None:
    assert unscoped(sql) == verdict


def test_a_team_is_found_among_parameters_of_every_shape() -> None:
    assert binds("A", ("x", "A")) and binds("A", {"b_team": "A"}) and binds("A", [("x", "A"), ("y", "A")])
    assert binds("A", [[1, 2], ["A", "A"]])  # an array of a batched statement
    assert not binds("A", ("x", "AB", 1, None, ["B"])) and not binds("A", {"b_team": "B"})


def test_off_nothing_is_installed(tmp_path: Path) -> None:
    """Without the setting no hook is on the engine; the driver's path and units of work test a global."""
    script = f"""
from procession.bootstrap import bootstrap
from procession.config import Settings
from procession.store import statement, tenancy
svc = bootstrap(Settings(data_dir={str(tmp_path)!r}))
with svc.uows.read("t") as uow:
    uow.processes.exists("x")
assert statement.check_sent is None and not tenancy.checking and tenancy.TEAM.get() is None
assert not svc.engine.dispatch.before_cursor_execute  # no listener
svc.close()
"""
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
