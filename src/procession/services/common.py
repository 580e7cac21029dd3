"""What every use case knows: who is asking."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """Who is asking: the team, the role of the key, the user the key acts as, and the key's id."""

    team_id: str
    role: str
    user_id: str | None = None
    key_id: str | None = None
