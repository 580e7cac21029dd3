"""Webhook deliveries (one event for one subscription) and the attempts of each.

A delivery is kept in order within its subscription and *subject* (the process the event is about; a job's or
a subscription's id for events about those): it waits while an earlier one of the same pair is pending or
running.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from procession.store import tables as t
from procession.store.repositories.base import Numbered

D = t.webhook_deliveries.c
A = t.webhook_attempts.c
PENDING, RUNNING, SUCCEEDED, FAILED = "PENDING", "RUNNING", "SUCCEEDED", "FAILED"
UNFINISHED = (PENDING, RUNNING)  # these hold back the later deliveries of their subscription and subject
Lane = tuple[str, str]  # (subscription id, subject)


@dataclass
class Delivery:
    id: int
    webhook_id: str
    subject: str
    event_key: str
    event_type: str
    message_id: str
    body: str
    status: str
    attempts: int
    error: str | None
    wake_at: int
    lease_until: int | None
    held_by: str | None
    task_ref: str
    created_at: int
    finished_at: int | None

    @property
    def lane(self) -> Lane:
        return self.webhook_id, self.subject

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "webhookId": self.webhook_id,
            "subject": self.subject,
            "eventType": self.event_type,
            "messageId": self.message_id,
            "status": self.status,
            "failedAttempts": self.attempts,  # since it was last started
            "error": self.error,
            "wakeAt": self.wake_at,
            "createdAt": self.created_at,
            "finishedAt": self.finished_at,
        }


class Deliveries(Numbered[Delivery]):
    """A team's deliveries."""

    table = t.webhook_deliveries
    row = Delivery
    unfinished = UNFINISHED

    def of_webhook(
        self, webhook_id: str, *, status: str | None = None, before_id: int | None = None, limit: int = 100
    ) -> list[Delivery]:
        """A subscription's deliveries, newest first."""
        stmt = self._select().where(D.webhook_id == webhook_id)
        if status is not None:
            stmt = stmt.where(D.status == status)
        if before_id is not None:
            stmt = stmt.where(D.id < before_id)
        return self._rows(stmt.order_by(D.id.desc()).limit(limit))

    def earliest_ahead(self, lanes: list[Lane]) -> dict[Lane, int]:
        """For each (subscription, subject), the id of its earliest delivery not finished."""
        if not lanes:
            return {}
        rows = self.conn.execute(
            sa.select(D.webhook_id, D.subject, sa.func.min(D.id))
            .where(
                D.team_id == self.team_id,
                D.subject.in_(sorted({s for _, s in lanes})),
                D.webhook_id.in_(sorted({w for w, _ in lanes})),
                D.status.in_(UNFINISHED),
            )
            .group_by(D.webhook_id, D.subject)
        )
        return {(wid, subject): int(first) for wid, subject, first in rows}

    def hold(self, delivery_ids: list[int], *, token: str, until: int) -> None:
        self.conn.execute(
            t.webhook_deliveries.update()
            .where(D.team_id == self.team_id, D.id.in_(delivery_ids), D.status.in_(UNFINISHED))
            .values(status=RUNNING, held_by=token, lease_until=until)
        )

    def still_held(self, delivery_ids: list[int], token: str) -> set[int]:
        """Of these deliveries, the ones ``token`` still holds; locked on PostgreSQL until commit."""
        if not delivery_ids:
            return set()
        rows = self.conn.execute(
            sa.select(D.id)
            .where(D.team_id == self.team_id, D.id.in_(delivery_ids), D.held_by == token, D.status == RUNNING)
            .with_for_update()
        ).scalars()
        return set(rows)

    def update(self, changes: list[dict[str, Any]]) -> None:
        """Write deliveries' new state: each a dict with ``b_id`` and the columns to set (the same for all)."""
        if not changes:
            return
        columns = [k for k in changes[0] if k != "b_id"]
        self.conn.execute(
            t.webhook_deliveries.update()
            .where(D.team_id == self.team_id, D.id == sa.bindparam("b_id"))
            .values({c: sa.bindparam(c) for c in columns}),
            changes,
        )

    def fail_unfinished(self, webhook_id: str, now: int, error: str) -> None:
        """Give up every delivery of a subscription not finished yet (it was disabled)."""
        self.conn.execute(
            t.webhook_deliveries.update()
            .where(D.team_id == self.team_id, D.webhook_id == webhook_id, D.status.in_(UNFINISHED))
            .values(status=FAILED, error=error, finished_at=now, held_by=None, lease_until=None)
        )

    def restart(
        self,
        webhook_id: str,
        *,
        ids: list[int] | None,
        since: int | None,
        ref: str,
        now: int,
        statuses: tuple[str, ...] = (FAILED,),
    ) -> int:
        """Send again the deliveries of a subscription that ended so (``ids`` of them, or all, made ``since``):
        due now, in a task ``ref``; how many."""
        stmt = t.webhook_deliveries.update().where(
            D.team_id == self.team_id, D.webhook_id == webhook_id, D.status.in_(statuses)
        )
        if ids is not None:
            stmt = stmt.where(D.id.in_(ids))
        if since is not None:
            stmt = stmt.where(D.created_at >= since)
        values = {"status": PENDING, "attempts": 0, "error": None, "finished_at": None, "wake_at": now}
        return int(self.conn.execute(stmt.values(task_ref=ref, **values)).rowcount)

    def later_tasks(self, lanes: list[Lane]) -> set[str]:
        """The tasks of pending deliveries in these lanes (held back by the ones that just finished)."""
        if not lanes:
            return set()
        rows = self.conn.execute(
            sa.select(D.webhook_id, D.subject, D.task_ref)
            .where(
                D.team_id == self.team_id,
                D.subject.in_(sorted({s for _, s in lanes})),
                D.webhook_id.in_(sorted({w for w, _ in lanes})),
                D.status == PENDING,
            )
            .distinct()
        )
        wanted = set(lanes)
        return {ref for wid, subject, ref in rows if (wid, subject) in wanted}

    def add_attempts(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(t.webhook_attempts.insert(), [{**r, "team_id": self.team_id} for r in rows])

    def attempts(self, delivery_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        """The attempts of these deliveries, oldest first, by delivery."""
        out: dict[int, list[dict[str, Any]]] = defaultdict(list)
        if not delivery_ids:
            return out
        rows = self.conn.execute(
            sa.select(
                A.delivery_id,
                A.outcome,
                A.request,
                A.status_code,
                A.excerpt,
                A.error,
                A.started_at,
                A.duration_ms,
            )
            .where(A.team_id == self.team_id, A.delivery_id.in_(delivery_ids))
            .order_by(A.id)
        )
        for r in rows:
            out[int(r.delivery_id)].append(
                {
                    "outcome": r.outcome,
                    "request": r.request,
                    "statusCode": r.status_code,
                    "excerpt": r.excerpt,
                    "error": r.error,
                    "startedAt": r.started_at,
                    "durationMs": r.duration_ms,
                }
            )
        return out
