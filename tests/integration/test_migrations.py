"""The migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from procession.bootstrap import Services
from procession.store.tables import metadata


def test_migrated_schema_matches_the_tables(services: Services) -> None:
    with services.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    ignored = {"procrastinate"}  # procrastinate manages its own tables
    assert [d for d in diff if not any(name in str(d) for name in ignored)] == []
