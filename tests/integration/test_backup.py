"""Backups on each database, taken while a bulk job commits chunk after chunk (SQLite's online backup in
steps; pg_dump on PostgreSQL), then restored into another database and checked whole: every chunk the job
had committed when the backup began is there, and the job's counts match its entries and the processes it
made. A restore refuses a database that a server (SQLite) or another session (PostgreSQL) uses."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from procession.engine.tasks import run_task
from procession.store import tables as t
from procession.store.backup import BackupError, backup, hold, restore
from tests.conftest import Team, postgres_database
from tests.integration.bulk import job, submit, task_of

ITEMS = 3000  # three chunks: two before the backup, one during or after it


@contextmanager
def fresh(url: str, tmp_path: Path) -> Iterator[str]:
    """An empty database of the same kind as ``url``, to restore into."""
    if url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored.db'}"
    else:
        yield from postgres_database()  # type: ignore[misc]


def counts(url: str, team_id: str, job_id: str) -> tuple[int, int, int]:
    """In the database at ``url``: the job's count of successes, its SUCCESS entries, the team's leads."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.connect() as conn:
        succeeded = conn.scalar(sa.select(t.jobs.c.succeeded).where(t.jobs.c.id == job_id))
        entries = conn.scalar(
            sa.select(sa.func.count()).where(
                t.job_entries.c.job_id == job_id, t.job_entries.c.status == "SUCCESS"
            )
        )
        made = conn.scalar(sa.select(sa.func.count()).where(t.processes.c.team_id == team_id))
    engine.dispose()
    return int(succeeded or 0), int(entries or 0), int(made or 0)


def test_a_backup_taken_during_a_bulk_job_is_restored_whole(team: Team, tmp_path: Path) -> None:
    svc = team.services
    url = svc.settings.url
    if not url.startswith("sqlite") and shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not installed")
    with svc.engine.connect() as conn:
        leads_before = conn.scalar(sa.select(sa.func.count()).where(t.processes.c.team_id == team.id))
    created = submit(team, [{"data": {"score": n % 100}} for n in range(ITEMS)], kind="create")
    chunks, two_done, stop = ITEMS // 1000, threading.Event(), threading.Event()

    def apply() -> None:  # as a worker would, one chunk after the other, until told to stop
        for chunk in range(chunks):
            if stop.is_set():
                return
            assert run_task(svc.uows, svc.kinds, task_of(team, created["id"], chunk))
            if chunk == 1:
                two_done.set()

    worker = threading.Thread(target=apply)
    worker.start()
    try:
        assert two_done.wait(120)
        before = job(team, created["id"])["counts"]["SUCCESS"]
        made = backup(url, tmp_path / "procession.backup", pages=8, pause_s=0.001)
        after = job(team, created["id"])["counts"]["SUCCESS"]
    finally:
        stop.set()
        worker.join(120)
    assert made["bytes"] > 0 and 2000 <= before <= after

    with fresh(url, tmp_path) as target:
        said = restore(target, tmp_path / "procession.backup")
        assert "restored" in said
        succeeded, entries, leads = counts(target, team.id, created["id"])
    assert before <= succeeded <= after  # what was committed when it began, and nothing half-done
    assert succeeded % 1000 == 0  # whole chunks only
    assert entries == succeeded and leads - leads_before == succeeded


def test_a_restore_refuses_a_database_in_use(services, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = services.settings.url
    if not url.startswith("sqlite") and shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not installed")
    source = tmp_path / "procession.backup"
    backup(url, source)
    with fresh(url, tmp_path) as target:
        engine = sa.create_engine(target, poolclass=sa.NullPool)
        restore(target, source)  # nobody uses it yet
        with engine.connect() as conn:
            held = hold(target)  # SQLite: a server's lock; PostgreSQL: this session
            try:
                with pytest.raises(BackupError, match=r"serve|session"):
                    restore(target, source)
            finally:
                if held is not None:
                    held.close()
            conn.rollback()
        engine.dispose()
    with pytest.raises(BackupError, match="not a backup"):
        restore(f"sqlite:///{tmp_path / 'other.db'}", Path(__file__))
