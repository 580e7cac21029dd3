"""Rate limits per API key and per team (``PROCESSION_RATE_LIMIT_KEY`` / ``_TEAM``), off unless set.

Each limit is a fixed window (``100/second``, ``6000/minute``; several separated by ``;``) counted in a store
every ``procession serve`` shares (``PROCESSION_RATE_LIMIT_STORAGE``, Redis: one ``INCR`` per limit, sent
together, and a ``TTL`` for the reply's headers), so a limit holds however many serve processes answer.
``memory://`` counts in this process alone. A request over any limit is a 429 with ``Retry-After``; every
limited reply says where the tightest limit stands, as the IETF draft has it: ``RateLimit-Limit``,
``RateLimit-Remaining`` and ``RateLimit-Reset`` (seconds until its window ends).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from limits.storage import storage_from_string

from procession.domain.errors import TooManyRequests


@dataclass(frozen=True)
class Standing:
    """Where a limit stands after a request counted against it."""

    limit: int
    remaining: int
    reset_s: int


class RateLimits:
    def __init__(self, per_key: str | None, per_team: str | None, storage: str) -> None:
        self.per_key: list[RateLimitItem] = parse_many(per_key) if per_key else []
        self.per_team: list[RateLimitItem] = parse_many(per_team) if per_team else []
        uri = storage if storage.startswith("async+") else f"async+{storage}"
        options = {"implementation": "redispy"} if "redis" in uri.split("://", 1)[0] else {}
        made = storage_from_string(uri, **options)
        assert isinstance(made, Storage)
        self.storage: Storage = made

    async def count(self, *, key_id: str, team_id: str) -> Standing:
        """Count a request of ``key_id`` (of ``team_id``) against every limit: where the tightest stands, or
        ``TooManyRequests`` (carrying it) when one is past."""
        counted = [(item, f"key/{key_id}") for item in self.per_key]
        counted += [(item, f"team/{team_id}") for item in self.per_team]
        keys = [item.key_for(who) for item, who in counted]
        hits = await asyncio.gather(
            *(self.storage.incr(k, item.get_expiry()) for k, (item, _) in zip(keys, counted, strict=True))
        )
        tightest = min(range(len(counted)), key=lambda i: (counted[i][0].amount - hits[i], i))
        item = counted[tightest][0]
        expires = await self.storage.get_expiry(keys[tightest])
        reset = max(1, math.ceil(expires - time.time()))
        standing = Standing(item.amount, max(0, item.amount - hits[tightest]), reset)
        if hits[tightest] > item.amount:
            raise Limited(standing)
        return standing


class Limited(TooManyRequests):
    """Past a limit: a 429 whose ``Retry-After`` is the end of the limit's window."""

    def __init__(self, standing: Standing) -> None:
        super().__init__(
            f"too many requests: at most {standing.limit} in this window; retry in {standing.reset_s} s",
            retry_after=standing.reset_s,
        )
        self.standing = standing


def headers(standing: Standing) -> list[tuple[bytes, bytes]]:
    """The draft's ``RateLimit-*`` fields for the reply."""
    return [
        (b"ratelimit-limit", str(standing.limit).encode()),
        (b"ratelimit-remaining", str(standing.remaining).encode()),
        (b"ratelimit-reset", str(standing.reset_s).encode()),
    ]
