"""``Idempotency-Key``: a replay returns the first answer; the same key with another request is a 409."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from procession.domain.clock import now_ms
from procession.domain.errors import Conflict
from procession.store.uow import UnitOfWork, UnitsOfWork


@dataclass(frozen=True)
class Once:
    """An ``Idempotency-Key`` and what it is bound to: a hash of the route and the request's meaning."""

    key: str
    request_hash: str


def run_once(
    uows: UnitsOfWork,
    team_id: str,
    once: Once | None,
    status_code: int,
    work: Callable[[UnitOfWork], Any],
) -> tuple[int, Any]:
    """Run ``work`` in a transaction of its own and commit it with the key's answer, unless the key has one
    already: (status code, answer)."""
    try:
        with uows.write(team_id) as uow:
            stored = _replay(uow, once)
            if stored is not None:
                return stored
            body = work(uow)
            if once is not None:
                uow.idempotency.put(
                    once.key,
                    request_hash=once.request_hash,
                    status_code=status_code,
                    response=body,
                    now=now_ms(),
                )
            uow.commit()
            return status_code, body
    except IntegrityError:
        # a concurrent request took the key (or the primary key) first
        with uows.read(team_id) as uow:
            stored = _replay(uow, once)
        if stored is not None:
            return stored
        raise Conflict("a concurrent change conflicts with this one; retry", code="conflict") from None


def _replay(uow: UnitOfWork, once: Once | None) -> tuple[int, Any] | None:
    stored = uow.idempotency.get(once.key) if once is not None else None
    if stored is None:
        return None
    first_hash, status_code, body = stored
    if first_hash != once.request_hash:  # type: ignore[union-attr]
        raise Conflict(
            "this Idempotency-Key was used with a different request",
            field="Idempotency-Key",
            code="idempotency_mismatch",
        )
    return status_code, body
