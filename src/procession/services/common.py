"""Small things every use case needs: the clock, new ids, the caller."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Caller:
    """Who is asking: the team, the role of the key, and the user the key acts as."""

    team_id: str
    role: str
    user_id: str | None = None
