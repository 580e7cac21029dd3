"""The migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from procession.bootstrap import Services
from procession.store.db import alembic_config
from procession.store.repositories import Procedures
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
