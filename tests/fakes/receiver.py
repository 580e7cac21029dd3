"""A fake HTTP endpoint for outbound calls: a real server on 127.0.0.1 (uvicorn with httptools, on its own
thread and event loop) that records every request and answers as a test scripts it, per path.

    with Receiver() as receiver:
        receiver.script("/hook", Reply(500), Reply(429, headers={"retry-after": "1"}), Hang(5), Drop())
        ...  # calls to f"{receiver.url}/hook": a 500, a 429, a held request, a dropped connection, then 200s

A scripted path answers with its behaviours in order, then with the default: 200 and
``{"ok": true, "n": <requests to that path so far>}``. A request is recorded as soon as its body is in,
before it is answered, so a dropped or held request counts as one the endpoint acted on.
"""

from __future__ import annotations

import asyncio
import collections
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
HANG_UP = "procession.hang_up"  # scope extension: close the connection without a reply


@dataclass(frozen=True)
class Reply:
    """Answer with this status, body and headers (content-length is added)."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Hang:
    """Hold the request open this long (or until the sender hangs up), then give the default answer."""

    seconds: float


@dataclass(frozen=True)
class Drop:
    """Close the connection without any reply, after recording the request: the endpoint acted."""


Behaviour = Reply | Hang | Drop


@dataclass(frozen=True)
class Received:
    """One request as it arrived; ``at`` is ``time.monotonic()``. ``hung_up`` is set when the sender closed
    the connection while the request was held (``Hang``)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    hung_up: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)


class _Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, handing the app a way to close the connection: plain ASGI has none,
    and ``Drop`` needs one (an app that returns without answering gets a 500 written for it)."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {HANG_UP: self.transport.close}  # type: ignore[dict-item]


class Receiver:
    """The fake endpoint; use it as a context manager. ``url`` is ``http://127.0.0.1:<port>``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[Received] = []
        self._counts: collections.Counter[str] = collections.Counter()
        self._scripts: dict[str, collections.deque[Behaviour]] = {}
        # proto given, so asyncio sees TCP and sets TCP_NODELAY on each connection: without it a reply
        # written as headers then body waits for a delayed ACK
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self._app,
            interface="asgi3",
            http=_Protocol,
            ws="none",
            lifespan="off",
            proxy_headers=False,
            log_config=None,
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        self._loop = uvloop.new_event_loop()
        self._stopping = asyncio.Event()
        self._thread = threading.Thread(target=self._serve, name=f"receiver-{self.port}", daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake receiver did not start")
            time.sleep(0.001)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._server.should_exit = True
        self._thread.join()

    def script(self, path: str, *behaviours: Behaviour) -> None:
        """Answer the next requests to ``path`` with these behaviours, in order, then with the default."""
        with self._lock:
            self._scripts.setdefault(path, collections.deque()).extend(behaviours)

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        """Answer the next request to ``path`` with a redirect to ``location``."""
        self.script(path, Reply(status, headers={"location": location}))

    def received(self, path: str | None = None) -> list[Received]:
        """The requests so far, oldest first; only those to ``path`` when given."""
        with self._lock:
            return [r for r in self._records if path is None or r.path == path]

    def count(self, path: str | None = None) -> int:
        return len(self.received(path))

    def keys(self, path: str | None = None) -> collections.Counter[str]:
        """How many requests carried each idempotency key (``idempotency-key``, else ``webhook-id``)."""
        keys = (r.headers.get("idempotency-key") or r.headers.get("webhook-id") for r in self.received(path))
        return collections.Counter(k for k in keys if k)

    def reset(self) -> None:
        """Forget the requests and the scripts."""
        with self._lock:
            self._records.clear()
            self._counts.clear()
            self._scripts.clear()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._server.serve(sockets=[self._socket]))
        finally:
            self._loop.close()
            self._socket.close()

    def _arrive(self, scope: Message, body: bytes) -> tuple[Received, Behaviour | None, int]:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        received = Received(scope["method"], scope["path"], headers, body, time.monotonic())
        with self._lock:
            self._records.append(received)
            self._counts[received.path] += 1
            script = self._scripts.get(received.path)
            return received, script.popleft() if script else None, self._counts[received.path]

    async def _app(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        received, behaviour, n = self._arrive(scope, bytes(body))
        if isinstance(behaviour, Hang):
            if await self._hold(receive, behaviour.seconds):
                received.hung_up.set()
                return
            behaviour = None
        if behaviour is None:
            behaviour = self.answer(received, n)
        if isinstance(behaviour, Drop):
            scope["extensions"][HANG_UP]()
            await self._until_hung_up(receive)
            return
        reply = behaviour
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items()]
        headers.append((b"content-length", str(len(reply.body)).encode()))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})

    def answer(self, received: Received, n: int) -> Reply | Drop:
        """The answer to a request no script covers (``n``: requests to its path so far); a fake service
        answers here as the real one would (and may act, then ``Drop`` the connection)."""
        return Reply(200, json.dumps({"ok": True, "n": n}).encode(), {"content-type": "application/json"})

    async def _hold(self, receive: Receive, seconds: float) -> bool:
        """Wait out a hang; True when the sender hung up first. The receiver closing ends it too."""
        hung_up = asyncio.ensure_future(self._until_hung_up(receive))
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({hung_up, stopping}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if hung_up.done():
            return True
        hung_up.cancel()
        return False

    @staticmethod
    async def _until_hung_up(receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
