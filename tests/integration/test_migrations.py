"""The migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from procession.bootstrap import Services
from procession.store import indexes
from procession.store.db import alembic_config, make_engine
from procession.store.repositories.jobs import Jobs
from procession.store.repositories.schemas import Procedures
from procession.store.repositories.teams import Users
from procession.store.tables import metadata
from tests.conftest import postgres_database


def test_migrated_schema_matches_the_tables(services: Services) -> None:
    with services.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    # procrastinate manages its own tables; text search's (0011: FTS5 tables, expression indexes) and
    # attribute indexes (built by background work) are no tables' of the declared schema
    ignored = {"procrastinate", "process_words", "record_words", "_words", indexes.PREFIX}
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


def test_user_ids_become_per_team_with_0007_and_keys_keep_their_users(tmp_path: Path) -> None:
    """0007 on a database with a user and a key of it: both kept, the key still names the user; afterwards
    another team may have a user of the same id, and a key cannot name a user of another team."""
    for url in itertools.chain([f"sqlite:///{tmp_path / 'old.db'}"], postgres_database()):
        cfg, engine = alembic_config(url), make_engine(url)
        try:
            command.upgrade(cfg, "0006")
            with engine.begin() as conn:
                conn.exec_driver_sql("INSERT INTO teams VALUES ('t1', 's1', 'n', 0), ('t2', 's2', 'n', 0)")
                conn.exec_driver_sql(
                    "INSERT INTO users (id, team_id, username, name, role, created_at) "
                    "VALUES ('u1', 't1', 'ann', 'Ann', 'admin', 0)"
                )
                conn.exec_driver_sql(
                    "INSERT INTO api_keys (id, team_id, key_hash, prefix, role, user_id, label, created_at) "
                    "VALUES ('k1', 't1', 'hash', 'prk_', 'admin', 'u1', '', 0)"
                )
            command.upgrade(cfg, "head")
            with engine.begin() as conn:
                assert Users(conn, "t1").id_of("ann") == "u1"
                assert conn.exec_driver_sql("SELECT user_id FROM api_keys WHERE id = 'k1'").scalar() == "u1"
                conn.exec_driver_sql(
                    "INSERT INTO users (id, team_id, username, name, role, created_at) "
                    "VALUES ('u1', 't2', 'bob', 'Bob', 'member', 0), ('u2', 't2', 'cy', 'Cy', 'member', 0)"
                )
                assert Users(conn, "t2").id_of("u1") == "u1"
            with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:  # u2 is t2's, not t1's
                conn.exec_driver_sql(
                    "INSERT INTO api_keys (id, team_id, key_hash, prefix, role, user_id, label, created_at) "
                    "VALUES ('k2', 't1', 'hash2', 'prk_', 'admin', 'u2', '', 0)"
                )
            with engine.begin() as conn:
                conn.exec_driver_sql("DELETE FROM users WHERE team_id = 't2'")
            command.downgrade(cfg, "0006")  # back to ids unique across teams
            with engine.connect() as conn:
                assert conn.exec_driver_sql("SELECT user_id FROM api_keys").scalar() == "u1"
        finally:
            engine.dispose()
