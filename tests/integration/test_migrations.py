"""The migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

import itertools
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from procession.bootstrap import Services
from procession.store.db import alembic_config
from procession.store.repositories.jobs import Jobs
from procession.store.repositories.schemas import Procedures
from procession.store.tables import metadata
from tests.conftest import postgres_database


def test_migrated_schema_matches_the_tables(services: Services) -> None:
    with services.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    ignored = {"procrastinate"}  # procrastinate manages its own tables
    assert [d for d in diff if not any(name in str(d) for name in ignored)] == []


def test_counters_become_sequences_and_back_on_postgresql() -> None:
    """0003 on a database made before it: each generated-id counter goes on from where it was, as a
    PostgreSQL sequence; downgrading puts the sequence's position back into the counter."""
    for url in postgres_database():
        cfg, engine = alembic_config(url), sa.create_engine(url)
        try:
            command.upgrade(cfg, "0002")
            attribute = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
            with engine.begin() as conn:
                conn.exec_driver_sql("INSERT INTO teams VALUES ('t1', 's', 'n', 0)")
                conn.exec_driver_sql(
                    "INSERT INTO procedures (id, team_id, short_id, label, version, definition) "
                    "VALUES ('p1', 't1', 'lead', 'Lead', 1, '{}')"
                )
                conn.exec_driver_sql(f"INSERT INTO counters VALUES ('p1', '{attribute}', 910)")
            command.upgrade(cfg, "head")
            with engine.begin() as conn:
                number = Procedures(conn, "t1").next_number("p1", attribute)
            assert number == 911
            command.downgrade(cfg, "0002")
            with engine.connect() as conn:
                assert conn.exec_driver_sql("SELECT value FROM counters").scalar_one() == 911
        finally:
            engine.dispose()


def test_jobs_made_before_0004_get_their_entry_counts(tmp_path: Path) -> None:
    """0004 on a database with a job: its counts come from its entries, once."""
    for url in itertools.chain([f"sqlite:///{tmp_path / 'old.db'}"], postgres_database()):
        cfg, engine = alembic_config(url), sa.create_engine(url)
        try:
            command.upgrade(cfg, "0003")
            with engine.begin() as conn:
                conn.exec_driver_sql("INSERT INTO teams VALUES ('t1', 's', 'n', 0)")
                conn.exec_driver_sql(
                    "INSERT INTO procedures (id, team_id, short_id, label, version, definition) "
                    "VALUES ('p1', 't1', 'lead', 'Lead', 1, '{}')"
                )
                conn.exec_driver_sql(
                    "INSERT INTO jobs (id, team_id, procedure_id, kind, status, total, chunks_total, "
                    "chunks_done, failed, created_at) VALUES ('j1', 't1', 'p1', 'update', 'IN_PROGRESS', 6, 1, "
                    "0, false, 0)"
                )
                for idx, status in enumerate(
                    ["INVALID", "SUCCESS", "SUCCESS", "ERROR", "NOT_STARTED", "SUCCESS"]
                ):
                    conn.exec_driver_sql(
                        f"INSERT INTO job_entries (job_id, idx, status, item) VALUES ('j1', {idx}, '{status}', '{{}}')"
                    )
            command.upgrade(cfg, "head")
            with engine.connect() as conn:
                job = Jobs(conn, "t1").get("j1")
            assert job is not None
            assert job.counts == {"INVALID": 1, "NOT_STARTED": 1, "SUCCESS": 3, "ERROR": 1}
            command.downgrade(cfg, "0003")
        finally:
            engine.dispose()
