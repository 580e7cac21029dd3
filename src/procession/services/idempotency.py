"""``Idempotency-Key``: a replay returns the first answer; the same key with another request is a 409."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import IntegrityError

from procession.domain.errors import Conflict
from procession.services.common import now_ms
from procession.store.uow import UnitOfWork


def run_once(
    make_uow: Callable[[], UnitOfWork],
    key: str | None,
    request_hash: str,
    status_code: int,
    work: Callable[[UnitOfWork], Any],
) -> tuple[int, Any]:
    """Run ``work`` and commit it with the key's answer, unless the key has one already."""
    try:
        with make_uow() as uow:
            stored = _replay(uow, key, request_hash)
            if stored is not None:
                return stored
            body = work(uow)
            if key is not None:
                uow.idempotency.put(
                    key, request_hash=request_hash, status_code=status_code, response=body, now=now_ms()
                )
            uow.commit()
            return status_code, body
    except IntegrityError:
        # a concurrent request took the key (or the primary key) first
        with make_uow() as uow:
            stored = _replay(uow, key, request_hash)
        if stored is not None:
            return stored
        raise Conflict("a concurrent change conflicts with this one; retry", code="conflict") from None


def _replay(uow: UnitOfWork, key: str | None, request_hash: str) -> tuple[int, Any] | None:
    stored = uow.idempotency.get(key) if key is not None else None
    if stored is None:
        return None
    first_hash, status_code, body = stored
    if first_hash != request_hash:
        raise Conflict(
            "this Idempotency-Key was used with a different request",
            field="Idempotency-Key",
            code="idempotency_mismatch",
        )
    return status_code, body
