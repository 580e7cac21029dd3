"""A team's webhook subscriptions (``tables.webhooks``). The signing secret is read only to sign: ``Webhook``
carries it, ``Webhook.public()`` never shows it."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import sqlalchemy as sa

from procession.domain.webhooks import Subscription
from procession.store import tables as t
from procession.store.repositories.base import TEAM, Repository
from procession.store.statement import Statement

W = t.webhooks.c


@dataclass
class Webhook:
    id: str
    url: str
    description: str
    event_types: list[str]
    secret: str = field(repr=False)
    enabled: bool
    timeout_ms: int
    max_attempts: int | None
    backoff_ms: int
    failing_since: int | None
    disabled_at: int | None
    disabled_reason: str | None
    version: int
    created_at: int
    updated_at: int

    def public(self) -> dict[str, Any]:
        """The API's form: everything but the secret."""
        return {
            "id": self.id,
            "url": self.url,
            "description": self.description,
            "eventTypes": self.event_types,
            "enabled": bool(self.enabled),
            "timeoutSeconds": self.timeout_ms / 1000,
            "retry": {"maxAttempts": self.max_attempts, "backoffSeconds": self.backoff_ms / 1000},
            "failingSince": self.failing_since,
            "disabledAt": self.disabled_at,
            "disabledReason": self.disabled_reason,
            "version": self.version,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }


_COLUMNS = [W[f.name] for f in fields(Webhook)]
# every save asks which subscriptions its events match: built once, sent straight to the driver
_SUBSCRIBED = Statement(
    sa.select(W.id, W.event_types).where(W.team_id == TEAM, W.enabled == sa.true()).order_by(W.id),
    json_columns=[1],
)


class Webhooks(Repository):
    """A team's subscriptions."""

    def _select(self) -> Any:
        return sa.select(*_COLUMNS).where(W.team_id == self.team_id)

    def subscribed(self) -> list[Subscription]:
        """The enabled subscriptions, with the event types each wants."""
        rows = _SUBSCRIBED.rows(self.conn, {"b_team": self.team_id})
        return [Subscription(wid, frozenset(types)) for wid, types in rows]

    def add(self, row: dict[str, Any]) -> None:
        self.conn.execute(t.webhooks.insert().values(team_id=self.team_id, **row))

    def get(self, webhook_id: str, *, for_update: bool = False) -> Webhook | None:
        stmt = self._select().where(W.id == webhook_id)
        row = self.conn.execute(stmt.with_for_update() if for_update else stmt).first()
        return _webhook(row) if row else None

    def get_many(self, webhook_ids: list[str]) -> dict[str, Webhook]:
        if not webhook_ids:
            return {}
        rows = self.conn.execute(self._select().where(W.id.in_(webhook_ids)))
        return {row.id: _webhook(row) for row in rows}

    def all(self) -> list[Webhook]:
        return [_webhook(row) for row in self.conn.execute(self._select().order_by(W.created_at, W.id))]

    def update(self, webhook_id: str, values: dict[str, Any]) -> None:
        self.conn.execute(
            t.webhooks.update().where(W.team_id == self.team_id, W.id == webhook_id).values(**values)
        )

    def delete(self, webhook_id: str) -> None:
        """The subscription, its deliveries and their attempts."""
        d, a = t.webhook_deliveries.c, t.webhook_attempts.c
        mine = sa.select(d.id).where(d.team_id == self.team_id, d.webhook_id == webhook_id)
        self.conn.execute(
            t.webhook_attempts.delete().where(a.team_id == self.team_id, a.delivery_id.in_(mine))
        )
        self.conn.execute(
            t.webhook_deliveries.delete().where(d.team_id == self.team_id, d.webhook_id == webhook_id)
        )
        self.conn.execute(t.webhooks.delete().where(W.team_id == self.team_id, W.id == webhook_id))

    def lock(self, webhook_ids: list[str]) -> None:
        """Lock these subscriptions until commit (PostgreSQL), in one order: before their deliveries."""
        if webhook_ids:
            self.conn.execute(
                sa.select(W.id)
                .where(W.team_id == self.team_id, W.id.in_(sorted(webhook_ids)))
                .order_by(W.id)
                .with_for_update()
            ).all()

    def recovered(self, webhook_ids: list[str]) -> None:
        """These subscriptions' endpoints took a delivery: they are failing no longer."""
        if webhook_ids:
            self.conn.execute(
                t.webhooks.update()
                .where(W.team_id == self.team_id, W.id.in_(webhook_ids), W.failing_since.is_not(None))
                .values(failing_since=None)
            )

    def failed(self, webhook_ids: list[str], now: int, *, longer_than_ms: int) -> list[Webhook]:
        """These subscriptions' endpoints failed an attempt at ``now``: failing since then, unless they were
        already; the enabled ones of them failing for longer than ``longer_than_ms``."""
        if not webhook_ids:
            return []
        self.conn.execute(
            t.webhooks.update()
            .where(W.team_id == self.team_id, W.id.in_(webhook_ids), W.failing_since.is_(None))
            .values(failing_since=now)
        )
        rows = self.conn.execute(
            self._select()
            .where(
                W.id.in_(webhook_ids),
                W.enabled == sa.true(),
                W.failing_since <= now - longer_than_ms,
            )
            .with_for_update()
        )
        return [_webhook(row) for row in rows]

    def record_event(self, webhook_id: str, type_: str, payload: dict[str, Any], now: int) -> None:
        """An event about a subscription, in the team's events (the subscription's id as its subject)."""
        self.conn.execute(
            t.events.insert().values(
                team_id=self.team_id,
                process_id=webhook_id,
                type=type_,
                actor=None,
                payload=payload,
                created_at=now,
            )
        )


def _webhook(row: Any) -> Webhook:
    hook = Webhook(*row)
    hook.enabled = bool(hook.enabled)  # SQLite: 0 or 1
    return hook
