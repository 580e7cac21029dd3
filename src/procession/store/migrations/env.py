"""Alembic environment: runs migrations on the configured URL (SQLite or PostgreSQL)."""

from alembic import context

from procession.store.db import make_engine
from procession.store.tables import metadata

url = context.config.get_main_option("sqlalchemy.url")
assert url is not None
engine = make_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
