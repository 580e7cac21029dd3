"""Text search's index on SQLite, as tests look at it: its segments, and leads that spread it over several."""

from __future__ import annotations

from tests.conftest import Team
from tests.integration.bulk import create


def segments(team: Team) -> int:
    """SQLite: the segments of the processes' FTS5 table (each transaction that wrote words adds one)."""
    with team.services.engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT count(DISTINCT segid) FROM process_words_idx").scalar_one())


def scattered(team: Team, first: str) -> list[str]:
    """Leads made a transaction each (a segment each on SQLite, which FTS5 merges four alike at a time) until
    the index has more than one segment: 5 at least, 40 at most. Their ids."""
    made: list[str] = []
    while len(made) < 5 or (team.services.settings.is_sqlite and segments(team) < 2):
        made.append(str(create(team, {"data": {"firstname": first, "city": f"Austin {len(made)}"}})["id"]))
        assert len(made) <= 40
    return made
