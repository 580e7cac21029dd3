"""``/readyz`` on each database: a real write that leaves nothing behind, no key needed, documented under
``meta``; on PostgreSQL it says how many workers were seen lately."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi.testclient import TestClient

from procession.api.app import create_app
from procession.bootstrap import Services
from procession.services.health import WORKERS_WITHIN_S
from procession.store import tables as t


def test_readyz_takes_a_real_write_and_leaves_nothing_behind(services: Services) -> None:
    def teams() -> int:
        with services.engine.connect() as conn:
            return int(conn.scalar(sa.select(sa.func.count()).select_from(t.teams)) or 0)

    before = teams()
    with TestClient(create_app(services)) as client:
        r = client.get("/readyz")
        assert r.status_code == 200, r.text
        data = r.json()["_data"]
        assert data["database"] == "writable"
        if services.settings.is_sqlite:
            assert "workers" not in data
        else:  # none runs beside these tests
            assert data["workers"] == {"seen": 0, "withinSeconds": WORKERS_WITHIN_S}
        operation = client.get("/openapi.json").json()["paths"]["/readyz"]["get"]
    assert teams() == before
    assert operation["tags"] == ["meta"] and "security" not in operation
    assert set(operation["responses"]) == {"200", "503"}
