"""``/readyz`` on each database: a real write that leaves nothing behind, no key needed, documented under
``meta``; on PostgreSQL it is ready only while a worker was seen lately. A database that cannot be reached
is a 503."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient

from procession.api.app import create_app
from procession.bootstrap import Services, bootstrap
from procession.config import Settings
from procession.services.health import WORKERS_WITHIN_S
from procession.store import tables as t


def test_readyz_takes_a_real_write_and_leaves_nothing_behind(services: Services) -> None:
    def teams() -> int:
        with services.engine.connect() as conn:
            return int(conn.scalar(sa.select(sa.func.count()).select_from(t.teams)) or 0)

    before = teams()
    with TestClient(create_app(services)) as client:
        if not services.settings.is_sqlite:  # none runs beside these tests: not ready, and says why
            r = client.get("/readyz")
            assert r.status_code == 503, r.text
            assert r.json()["_errors"][0]["code"] == "no_workers"
            beating = beat(services.engine)
        r = client.get("/readyz")
        assert r.status_code == 200, r.text
        data = r.json()["_data"]
        assert data["database"] == "writable"
        if services.settings.is_sqlite:
            assert "workers" not in data
        else:
            assert data["workers"] == {"seen": 1, "withinSeconds": WORKERS_WITHIN_S}
            with services.engine.begin() as conn:  # gone again
                conn.execute(sa.text("DELETE FROM procrastinate_workers WHERE id = :id"), {"id": beating})
        operation = client.get("/openapi.json").json()["paths"]["/readyz"]["get"]
    assert teams() == before
    assert operation["tags"] == ["meta"] and "security" not in operation
    assert set(operation["responses"]) == {"200", "503"}


def beat(engine: sa.Engine) -> int:
    """A worker's heartbeat, as procrastinate records it; the worker's id."""
    with engine.begin() as conn:
        return int(
            conn.exec_driver_sql("INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id").scalar_one()
        )


def test_readyz_fails_while_the_database_cannot_be_reached(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    svc = bootstrap(settings, run_migrations=False)  # nothing listens on port 1
    try:
        with TestClient(create_app(svc)) as client:
            assert client.get("/healthz").status_code == 200  # the process is alive
            r = client.get("/readyz")
            assert r.status_code == 503, r.text
            assert r.json()["_errors"][0]["code"] == "not_ready"
    finally:
        svc.close()
