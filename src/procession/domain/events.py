"""Stored events, as read back for history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EventRecord:
    id: int
    process_id: str
    type: str
    actor: str | None
    payload: dict[str, Any]
    created_at: int
