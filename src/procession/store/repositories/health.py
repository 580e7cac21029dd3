"""What ``/readyz`` asks the database itself: does it take a write, were workers seen lately."""

from __future__ import annotations

import sqlalchemy as sa

from procession.store import tables as t

_T = t.teams.c
ADD_PROBE = t.teams.insert().values(
    id=sa.bindparam("b_id"), slug=sa.bindparam("b_slug"), name="readiness probe", created_at=0
)
REMOVE_PROBE = t.teams.delete().where(_T.id == sa.bindparam("b_id"))
# procrastinate's workers beat every 10 s (``update_heartbeat_interval``) and are pruned once silent 30 s
WORKERS_SEEN = sa.text(
    "SELECT count(*) FROM procrastinate_workers WHERE last_heartbeat > now() - make_interval(secs => :within)"
)


class Health:
    """Not scoped to a team: it asks about the database."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def probe_write(self, probe_id: str) -> None:
        """Add a team row and remove it again in the open transaction: committed, its pages are written (the
        WAL and the table's), yet no other transaction ever sees it."""
        self.conn.execute(ADD_PROBE, {"b_id": probe_id, "b_slug": f"readyz-{probe_id}"})
        self.conn.execute(REMOVE_PROBE, {"b_id": probe_id})

    def workers_seen(self, within_s: int) -> int:
        """PostgreSQL: how many procrastinate workers sent a heartbeat in the last ``within_s`` seconds."""
        return int(self.conn.execute(WORKERS_SEEN, {"within": within_s}).scalar_one())
