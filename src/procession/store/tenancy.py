"""A check of tenancy, for tests and debugging (``PROCESSION_CHECK_TENANCY``): every statement the process
sends that names a team's table (one with ``team_id``, or ``job_entries``, a team's through its job) must
name ``team_id`` in a condition or as an inserted column, and, inside a unit of work, bind its team's id.
Statements marked ``ACROSS_TEAMS`` pass. A violation is appended to the file and raised.

It sees statements in two places: SQLAlchemy's (``before_cursor_execute`` on the engine) and those sent
straight to the driver (``statement.check_sent``). Units of work say which team is theirs (``TEAM``) only
while some engine is checked; otherwise nothing is installed and nothing is paid.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from procession.store import statement
from procession.store.statement import ACROSS_TEAMS
from procession.store.tables import metadata

SCOPED = frozenset(name for name, table in metadata.tables.items() if "team_id" in table.c) | {"job_entries"}
MARK = ACROSS_TEAMS.strip()
HEADER = "# checking tenancy:"  # the first line each checking process writes: the check is on
_DATA = re.compile(r"\s*(?:SELECT|INSERT|UPDATE|DELETE|WITH)\b", re.I)  # not PRAGMA, DDL, BEGIN, SAVEPOINT
_TABLES = re.compile(r"\b(" + "|".join(sorted(SCOPED)) + r")\b")
# a table's name in a string is not the table (the 'tasks' of a sequence's name)
_LITERALS = re.compile(r"'(?:[^']|'')*'")
# team_id compared after WHERE or ON: a select list or a SET naming it scopes nothing
_CONDITION = re.compile(r"\b(?:WHERE|ON)\b.*?\bteam_id\s*(?:=|IN\b)", re.S | re.I)
_INSERTED = re.compile(r"^\s*INSERT\s+INTO\s+\w+\s*\(([^)]*)\)", re.I)

TEAM: ContextVar[str | None] = ContextVar("procession.tenancy.team", default=None)  # the open unit of work's
checking = False  # some engine is checked: units of work set ``TEAM``


class TenancyViolation(Exception):
    """A statement on a team's table is not scoped to its team."""


@lru_cache(maxsize=256)  # not more: a batch's text holds thousands of placeholders
def unscoped(sql: str) -> tuple[str | None, bool]:
    """The first team's table ``sql`` names (or None); whether it has ``team_id`` in a condition or insert."""
    if MARK in sql or not _DATA.match(sql):
        return None, True
    text = _LITERALS.sub("''", sql)
    found = _TABLES.search(text)
    if found is None:
        return None, True
    inserted = _INSERTED.match(text)
    named = bool(_CONDITION.search(text)) or (inserted is not None and "team_id" in inserted.group(1))
    return found.group(1), named


def binds(team_id: str, params: Any) -> bool:
    """Whether ``team_id`` is among ``params``: positional, named, rows of an ``executemany``, arrays."""
    if isinstance(params, dict):
        params = list(params.values())
    if not isinstance(params, list | tuple):
        return bool(params == team_id)
    if team_id in params:
        return True
    return any(isinstance(p, list | tuple | dict) and binds(team_id, p) for p in params)


class Auditor:
    """Checks the statements of one engine; violations go to ``path``, one line each."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # asked before a violation is recorded: True lets the statement pass (the tests' own direct reads)
        self.excuse: Callable[[], bool] | None = None
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._append(f"{HEADER} {socket.gethostname()}:{os.getpid()}")

    def check(self, sql: str, params: Any) -> None:
        """Raise ``TenancyViolation`` (and record it) if ``sql`` with ``params`` breaks the rule."""
        table, named = unscoped(sql)
        if table is None:
            return
        team = TEAM.get()
        if not named:
            why = "names no team_id"
        elif team is not None and team not in sql and not binds(team, params):
            why = f"does not bind the team of its unit of work ({team})"
        else:
            return
        if self.excuse is not None and self.excuse():
            return
        line = f"{table}: {why}: {' '.join(sql.split())[:300]}"
        self._append(line)
        raise TenancyViolation(line)

    def on_execute(self, conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        self.check(sql, params)

    def _append(self, line: str) -> None:
        with self._lock, self.path.open("a") as out:  # one write of a short line: processes may share it
            out.write(line + "\n")


_auditors: weakref.WeakKeyDictionary[sa.Engine, Auditor] = weakref.WeakKeyDictionary()


def install(engine: sa.Engine, path: Path) -> Auditor:
    """Check every statement sent on ``engine`` from now on, into ``path``."""
    global checking
    auditor = _auditors[engine] = Auditor(path)
    sa.event.listen(engine, "before_cursor_execute", auditor.on_execute)
    statement.check_sent = _check_sent
    checking = True
    return auditor


def auditor_of(engine: sa.Engine) -> Auditor | None:
    return _auditors.get(engine)


def _check_sent(engine: sa.Engine, sql: str, args: Any) -> None:
    auditor = _auditors.get(engine)
    if auditor is not None:
        auditor.check(sql, args)
