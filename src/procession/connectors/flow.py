"""What a connector's step is made of: a small state machine over calls. The run's step loop
(``engine.steps.Active``) asks it for its next call, sends it through the same outbound machinery as any
other step (address checks, deadline, retries, the attempts kept), and hands it the reply; the machine says
what that reply means (``Verdict``): another call, done (with what it made there, to link), a transient
failure to retry, or a failure. A machine lives for one attempt of its step: a retried step starts over, so
every call it makes must be safe to make again (an update, or a create that finds what it made before)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from procession.connectors.outbound import Call, Reply
from procession.domain.connectors import Connector

EXCERPT = 2000  # characters of a body kept with the attempt that sent it


@dataclass(frozen=True)
class Account:
    """A connector with its credentials, opened for the calls of one hold of runs (never stored, logged or
    recorded: ``recorded`` hides the headers they make)."""

    connector: Connector
    credentials: dict[str, str]

    def headers(self) -> dict[str, str]:
        return self.connector.auth_headers(self.credentials)

    def __repr__(self) -> str:
        return f"Account({self.connector.name!r}, credentials hidden)"


@dataclass(frozen=True)
class Made:
    """What a step made or adopted at a connector: the link to keep for the process."""

    object_type: str
    external_id: str
    url: str | None
    created: bool = False
    adopted: bool = False


@dataclass(frozen=True)
class Next:
    """The reply moves the step on: its next call follows (``note`` is kept with the attempt)."""

    note: dict[str, Any]


@dataclass(frozen=True)
class Done:
    output: Any
    made: Made | None = None


@dataclass(frozen=True)
class Retry:
    """A failure that may pass: the step is tried again after a back-off, or ``after_ms`` if asked for."""

    error: str
    after_ms: int | None = None


@dataclass(frozen=True)
class Fail:
    error: str


Verdict = Next | Done | Retry | Fail


class Machine(Protocol):
    account: Account

    def call(self, deadline_s: float) -> tuple[Call, dict[str, Any]]:
        """The next call, and how it is recorded (credentials hidden)."""
        ...

    def judge(self, reply: Reply, now: int) -> Verdict: ...


def recorded(call: Call, secret: dict[str, str], body: Any = None) -> dict[str, Any]:
    """A call as it is kept with its attempt: the headers that carry credentials hidden, the body bounded."""
    hidden = {name.lower() for name in secret}
    out: dict[str, Any] = {
        "method": call.method,
        "url": call.url,
        "headers": {k: ("********" if k.lower() in hidden else v) for k, v in call.headers.items()},
    }
    if body is not None:
        out["body"] = body
    elif call.body is not None:
        text = call.body[:EXCERPT].decode("utf-8", "replace")
        try:
            out["body"] = orjson.loads(call.body) if len(call.body) <= EXCERPT else text
        except orjson.JSONDecodeError:
            out["body"] = text
    return out


def json_body(reply: Reply) -> Any:
    """A reply's body as JSON, or None (error bodies are parsed leniently: any field may be missing)."""
    try:
        return orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        return None


def as_text(value: Any) -> str:
    """A value as the text an external service's string field takes: numbers, booleans and objects too."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    return orjson.dumps(value).decode()
