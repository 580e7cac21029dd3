"""What every use case knows: who is asking."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """Who is asking: the team, the role of the key, and the user the key acts as."""

    team_id: str
    role: str
    user_id: str | None = None
