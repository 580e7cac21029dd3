"""The outbound connection pool: a connection is handed to one request at a time, whatever else the pool
does while a request waits for it."""

from __future__ import annotations

import asyncio
from typing import Any

import httpcore

from procession.connectors.addresses import Allow
from procession.connectors.pool import _Guard, _Pool
from tests.fakes.receiver import Receiver

ORIGIN = httpcore.Origin(b"http", b"127.0.0.1", 9)


class Idle:
    """A kept-alive connection as the pool sees it; ``closing``: its close waits for this event."""

    def __init__(self, *, expired: bool = False, closing: asyncio.Event | None = None) -> None:
        self.expired, self.closing, self.closed = expired, closing, False

    def is_available(self) -> bool:
        return not self.closed

    def has_expired(self) -> bool:
        return self.expired

    async def aclose(self) -> None:
        if self.closing is not None:
            await self.closing.wait()
        self.closed = True

    async def handle_async_request(self, request: Any) -> Any:
        raise httpcore.ConnectionNotAvailable()


def pool(*idle: Idle) -> _Pool:
    made = _Pool(_Guard(Allow.parse(["127.0.0.1"])), 10, keepalive_s=4.0)
    made._idle[(b"http", b"127.0.0.1", 9)] = list(idle)  # type: ignore[list-item]
    made._idle_count = len(idle)
    return made


def test_a_connection_is_taken_once_though_the_idle_ones_were_swept_while_one_was_closed() -> None:
    async def scenario() -> tuple[Any, Any]:
        closing = asyncio.Event()
        kept, expired = Idle(), Idle(expired=True, closing=closing)
        p = pool(kept, expired)
        taking = asyncio.create_task(p._take(ORIGIN))  # pops ``expired``, waits for it to close
        await asyncio.sleep(0)
        p._next_sweep = 0.0
        await p._sweep()  # meanwhile: the idle connections looked over
        closing.set()
        first = await taking
        return first, await p._take(ORIGIN)

    first, second = asyncio.run(scenario())
    assert isinstance(first, Idle) and not first.closed
    assert second is None  # not the same connection a second time, while the first request has it


def test_a_connection_that_turns_out_busy_is_replaced_by_a_new_one() -> None:
    with Receiver() as receiver:
        port = int(receiver.url.rsplit(":", 1)[1])

        async def scenario() -> int:
            p = pool()
            busy = Idle()
            p._idle[(b"http", b"127.0.0.1", port)] = [busy]  # type: ignore[list-item]
            p._idle_count = 1
            request = httpcore.Request("GET", f"{receiver.url}/hook", headers=[(b"host", b"127.0.0.1")])
            response = await p.handle_async_request(request)
            await response.aread()
            await response.aclose()
            await p.aclose()
            assert busy.closed
            return response.status

        assert asyncio.run(scenario()) == 200
