"""Attribute indexes, built and dropped as background work: a procedure saved with a different set of
``indexed`` attributes adds a task (``index_later``, in the save's transaction) that brings the database's
indexes of that procedure to its definition as it is when the task runs (``store.indexes``).

The work is held, then done outside any transaction: ``CREATE INDEX CONCURRENTLY`` cannot run in one, and
takes as long as the table is big. The task stays pending meanwhile (due again after ``LEASE_MS``), so a
worker that dies leaves it to another; building is idempotent (``IF NOT EXISTS``; an invalid index, left
by a concurrent build that failed, is dropped and built again). The tasks of one procedure go in turn (one
lane), so that a build and a drop of the same index never race.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import sqlalchemy as sa

from procession.domain.clock import now_ms
from procession.domain.procedure import Procedure
from procession.engine.tasks import Kind
from procession.store import indexes
from procession.store.db import DEFAULT_TIMEOUT
from procession.store.tasks import NewTask, Task
from procession.store.uow import UnitOfWork, UnitsOfWork

log = logging.getLogger("procession.engine")
KIND = "procedure.indexes"
LEASE_MS = 3_600_000  # due again after this long if the worker building it went away


def index_later(uow: UnitOfWork, before: Procedure | None, after: Procedure) -> None:
    """In the transaction saving ``after`` (over ``before``): a task to build and drop its attribute indexes,
    if the indexed attributes changed."""
    old, new = indexes.wanted(before) if before else {}, indexes.wanted(after)
    if old.keys() != new.keys():
        args = {"procedure": after.id, "drop": sorted(old.keys() - new.keys())}
        task = NewTask(uuid.uuid4().hex, args=args)
        uow.tasks.add(KIND, [task], lane=f"{KIND}:{after.id}", now=now_ms())


def _hold(uow: UnitOfWork, task: Task) -> str:
    uow.tasks.schedule(task.id, now_ms() + LEASE_MS)
    return str(task.args["procedure"])


def _outside(uows: UnitsOfWork, task: Task, procedure_id: str) -> None:
    with uows.read(task.team_id) as uow:
        procedure = uow.procedures.get(procedure_id)
    want = indexes.wanted(procedure) if procedure else {}
    drop = [n for n in task.args.get("drop", []) if n not in want]
    started = now_ms()
    if uows.engine.dialect.name == "postgresql":
        _postgresql(uows.engine, want, drop)
    else:
        with uows.write(task.team_id) as uow:  # SQLite: writers wait for the build anyway
            _apply(uow.conn, want, drop)
            uow.commit()
    log.info(
        "procedure %s: indexes %s built, %s dropped in %d ms",
        procedure_id, sorted(want), drop, now_ms() - started,
    )  # fmt: skip
    with uows.write(task.team_id) as uow:
        claimed = uow.tasks.claim(task.id)
        if claimed is not None:
            uow.tasks.close(claimed, now_ms())
        uow.commit()


def _postgresql(engine: sa.Engine, want: dict[str, Any], drop: list[str]) -> None:
    """Outside a transaction, with no statement timeout: a concurrent build takes as long as it takes."""
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("SET statement_timeout = 0")
        try:
            _apply(conn, want, drop)
        finally:
            conn.exec_driver_sql(f"SET statement_timeout = {int(DEFAULT_TIMEOUT.get(engine, 0))}")


def _apply(conn: sa.Connection, want: dict[str, Any], drop: list[str]) -> None:
    found = indexes.existing(conn)
    for name in drop:
        if name in found:
            conn.exec_driver_sql(indexes.drop(conn.dialect, name))
    built = []
    for name, attribute in want.items():
        if found.get(name) is False:  # a concurrent build that failed: its leftover is dropped first
            conn.exec_driver_sql(indexes.drop(conn.dialect, name))
        if not found.get(name):
            conn.exec_driver_sql(indexes.create(conn.dialect, attribute))
            built.append(name)
    # the planner's figures on the new index (on PostgreSQL, on its expression: the table's), without which
    # it would take it for the procedure's rows in no order and prefer it to the right one
    for statement in indexes.analyze(conn.dialect, built):
        conn.exec_driver_sql(statement)


def _never(uow: UnitOfWork, task: Task) -> None:
    raise AssertionError("attribute indexes are built outside a transaction")


INDEXING = Kind(KIND, run=_never, hold=_hold, outside=_outside, max_attempts=10)
