"""A run's steps on a worker: what each computes from CEL, the call it makes, and what its reply means.

An ``Active`` is a run held by this worker. It advances through steps that need no network (a ``when``
that is false, a ``wait`` already over) by itself, stops at a call (``http``, ``webhook``) until the reply
is judged, and parks on a ``wait`` or on a failed attempt to be retried later: never sleeping on a worker.
Every attempt is kept (``attempts``) with its computed input, for the run's record.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from procession.connectors.flow import Account, Done, Machine, Next, Retry
from procession.connectors.outbound import Call, Refused, Reply, Unreachable, retry_after_ms, transient
from procession.connectors.webhooks import signed_headers
from procession.domain.automations import Automation
from procession.domain.connectors import Link
from procession.domain.expressions import compute
from procession.domain.procedure import Procedure
from procession.domain.process import Process
from procession.domain.steps import CONNECTOR_STEPS, Step, template_parts
from procession.engine import connected
from procession.store.repositories.runs import FAILED, PENDING, SUCCEEDED, WAITING, Run

EXCERPT = 2000  # characters of a reply's body kept with its attempt
OUTPUT = 64 * 1024  # bytes of a reply's body that can become a step's output
SECRET_HEADERS = ("authorization", "proxy-authorization", "x-api-key", "cookie")
MAX_RETRY_AFTER_MS = 24 * 3600 * 1000


def retry_wait_ms(backoff_ms: int, failed: int, after_ms: int | None, *, cap_ms: int | None = None) -> int:
    """How long to wait before trying a call again after ``failed + 1`` failed attempts: ``backoff_ms``
    doubling after each, give or take a quarter (at most ``cap_ms``), or the ``Retry-After`` asked for if
    that is longer (at most a day). Automation steps and webhook deliveries wait alike."""
    backoff = int(backoff_ms * 2 ** min(failed, 40) * random.uniform(0.75, 1.25))
    if cap_ms is not None:
        backoff = min(backoff, cap_ms)
    return max(backoff, min(after_ms or 0, MAX_RETRY_AFTER_MS))


class StepFailed(Exception):
    """A step that cannot succeed as configured (a CEL error, a refused address, an unexpected status)."""


@dataclass
class Active:
    run: Run
    automation: Automation
    procedure: Procedure
    process: Process
    record: dict[str, Any] = field(default_factory=dict)  # its record's data, by shortId
    attempts: list[dict[str, Any]] = field(default_factory=list)  # not yet written
    call: Call | None = None  # the step's call, made this round
    request: dict[str, Any] | None = None  # the call as recorded
    started: int = 0
    cut_ms: int = 30_000  # no call lasts longer (well inside the lease its worker holds the run by)
    done: bool = False  # nothing more this round: finished, parked, or lost
    lost: bool = False  # no longer held by this worker (cancelled, or taken over after its lease)
    team_id: str = ""
    accounts: dict[str, Account | str] = field(default_factory=dict)  # connector id -> account (or why not)
    links: dict[tuple[str, str], Link] = field(default_factory=dict)  # (connector, object type) -> link
    new_links: list[tuple[Link, Any]] = field(default_factory=list)  # not yet written (``connected.keep``)
    machine: Machine | None = None  # the connector step's, during one attempt of it
    files_dir: Path | None = None  # where uploaded files are (a ``dropbox.upload`` of a file)

    @property
    def steps(self) -> tuple[Step, ...]:
        return self.automation.steps

    def variables(self, now: int) -> dict[str, Any]:
        run = self.run
        return {
            "process": self.process.variables(self.procedure) | {"record": self.record},
            "event": run.event,
            "steps": run.outputs,
            "run": {"id": run.id, "automation": self.automation.name, "attempt": run.attempts + 1},
            "now": now,
        }

    def attempt(self, outcome: str, now: int, **fields: Any) -> None:
        step = self.run.step
        self.attempts.append(
            {
                "run_id": self.run.id,
                "step": step,
                "name": self.steps[step].name if step < len(self.steps) else "",
                "outcome": outcome,
                "started_at": self.started or now,
                "duration_ms": max(0, now - (self.started or now)),
                **dict.fromkeys(("request", "status_code", "excerpt", "output", "error")),
                **fields,
            }
        )

    def advance(self, output: Any, now: int, *, then_end: bool = True) -> None:
        """The current step is done: its output kept, on to the next (or, ``then_end``, the end)."""
        run = self.run
        run.outputs = {**run.outputs, self.steps[run.step].name: output}
        run.step += 1
        run.attempts = 0
        if then_end and run.step >= len(self.steps):
            self.finish(SUCCEEDED, now)

    def finish(self, status: str, now: int, error: str | None = None) -> None:
        self.run.status, self.run.error, self.run.finished_at, self.done = status, error, now, True

    def park(self, status: str, at: int, error: str | None = None) -> None:
        self.run.status, self.run.wake_at, self.run.error, self.done = status, at, error, True

    def fail(self, error: str, now: int, **recorded: Any) -> None:
        self.attempt(FAILED, now, error=error[:2000], **recorded)
        self.finish(FAILED, now, error[:2000])

    def retry_or_fail(self, error: str, now: int, after_ms: int | None, **recorded: Any) -> None:
        """A transient failure: again after a back-off (or the ``Retry-After`` asked for), or, after the
        automation's last attempt, the run fails."""
        run = self.run
        if run.attempts + 1 >= self.automation.max_attempts:
            self.fail(
                f"{error} (attempt {run.attempts + 1} of {self.automation.max_attempts})", now, **recorded
            )
            return
        self.attempt("RETRY", now, error=error[:2000], **recorded)
        wait = retry_wait_ms(self.automation.backoff_ms, run.attempts, after_ms)
        run.attempts += 1
        self.park(PENDING, now + wait, error[:2000])

    def next_call(self, now: int) -> None:
        """Advance through the steps that need nothing outside until one that does: its call is ``call``,
        or the run is done for this round. Steps that write processes are left to ``local`` (``needs_local``)."""
        while not self.done and self.call is None:
            if self.run.step >= len(self.steps):  # after a last step that waited
                self.finish(SUCCEEDED, now)
                return
            step = self.steps[self.run.step]
            self.started = now
            variables = self.variables(now)
            try:
                if step.when is not None and compute(step.when, variables) is not True:
                    self.attempt("SKIPPED", now)
                    self.advance(None, now)
                    continue
                if step.type == "wait":
                    until = self._until(step, variables, now)
                    if until > now:
                        self.attempt("WAIT", now, output={"until": until})
                        self.advance({"until": until}, now, then_end=False)
                        self.park(WAITING, until)
                        return
                    self.advance({"until": until}, now)
                    continue
                if step.type in ("http", "webhook"):
                    self.call, self.request = build_call(self, step, variables, now)
                elif step.type in CONNECTOR_STEPS:
                    if self.machine is None:
                        self.machine = connected.machine(self, step, variables)
                    self.call, self.request = self.machine.call(min(step.timeout_ms, self.cut_ms) / 1000)
                return  # a call, or a step that writes processes
            except (ValueError, StepFailed, Refused, OSError) as e:
                self.machine = None
                self.fail(str(e), now, request=self.request)

    @property
    def needs_local(self) -> bool:
        return not self.done and self.call is None and self.steps[self.run.step].type.endswith("_process")

    def _until(self, step: Step, variables: dict[str, Any], now: int) -> int:
        if step.config.get("seconds") is not None:
            return now + int(float(step.config["seconds"]) * 1000)
        value = compute(step.config["until"], variables)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise StepFailed(f"until gave {value!r}, not a time in epoch milliseconds")
        return int(value)

    def judge(self, reply: Reply | BaseException, now: int) -> None:
        """The current call's outcome."""
        step, request, machine = self.steps[self.run.step], self.request, self.machine
        self.call, self.request, self.machine = None, None, None
        if isinstance(reply, Reply) and machine is not None:
            self._judged(machine, reply, request, now)
        elif isinstance(reply, Refused):
            self.fail(f"refused: {reply}", now, request=request)
        elif isinstance(reply, Unreachable):
            what = "no reply within the deadline" if reply.timed_out else f"unreachable: {reply}"
            self.retry_or_fail(what, now, None, request=request)
        elif isinstance(reply, BaseException):
            self.fail(f"{type(reply).__name__}: {reply}", now, request=request)
        else:
            excerpt = reply.body[:EXCERPT].decode("utf-8", "replace")
            recorded = {"request": request, "status_code": reply.status, "excerpt": excerpt}
            expect = step.config.get("expect")
            if (reply.status in expect) if expect else 200 <= reply.status < 300:
                output = _output(reply)
                self.attempt("OK", now, output=output, **recorded)
                self.advance(output, now)
            elif transient(reply.status):
                after = retry_after_ms(reply.headers, now)
                self.retry_or_fail(f"HTTP {reply.status}", now, after, **recorded)
            else:
                self.fail(f"HTTP {reply.status} (expected {expect or '2xx'})", now, **recorded)

    def _judged(self, machine: Machine, reply: Reply, request: dict[str, Any] | None, now: int) -> None:
        """A connector step's reply, as its machine reads it: its next call, done (linked), or failed."""
        excerpt = reply.body[:EXCERPT].decode("utf-8", "replace")
        recorded = {"request": request, "status_code": reply.status, "excerpt": excerpt}
        verdict = machine.judge(reply, now)
        if isinstance(verdict, Next):
            self.machine = machine
            self.attempt("CONTINUE", now, output=verdict.note, **recorded)
        elif isinstance(verdict, Done):
            if verdict.made is not None:
                connected.keep(self, machine.account.connector.id, verdict.made, now)
            self.attempt("OK", now, output=verdict.output, **recorded)
            self.advance(verdict.output, now)
        elif isinstance(verdict, Retry):
            self.retry_or_fail(verdict.error, now, verdict.after_ms, **recorded)
        else:
            self.fail(verdict.error, now, **recorded)


def build_call(
    active: Active, step: Step, variables: dict[str, Any], now: int
) -> tuple[Call, dict[str, Any]]:
    """The call a step makes, and how it is recorded (secret headers hidden). The idempotency key (or the
    webhook's id) is the run's and the step's: the same on every retry."""
    run, config = active.run, step.config
    url = render(config["url"], variables)
    key = f"run-{run.id}-step-{run.step}"
    deadline = min(step.timeout_ms, active.cut_ms) / 1000
    if step.type == "webhook":
        body = orjson.dumps(
            {
                "type": run.event.get("type", "automation.run"),
                "timestamp": dt.datetime.fromtimestamp(now / 1000, dt.UTC).isoformat(),
                "data": {
                    "process": variables["process"],
                    "event": run.event,
                    "automation": {"id": active.automation.id, "name": active.automation.name},
                    "run": run.id,
                },
            }
        )
        headers = signed_headers(config["secret"], f"msg_{key.replace('-', '_')}", now // 1000, body)
        request = {"method": "POST", "url": url, "headers": {"webhook-id": headers["webhook-id"]}}
        return Call("POST", url, headers, body, deadline), request | {"body": _excerpt(body)}
    headers = {name: render(value, variables) for name, value in (config.get("headers") or {}).items()}
    headers["Idempotency-Key"] = key
    secret: dict[str, str] = {}
    if config.get("connector"):  # the URL is a path under its base URL; its credentials authenticate
        account = connected.account(active, config["connector"])
        url, secret = account.connector.url(url), account.headers()
        headers = {k: v for k, v in headers.items() if k.lower() not in {s.lower() for s in secret}} | secret
    payload = None
    if config.get("body") is not None:
        try:
            payload = orjson.dumps(compute(config["body"], variables))
        except TypeError as e:
            raise StepFailed(f"body cannot be sent as JSON: {e}") from None
        headers.setdefault("Content-Type", "application/json")
    hidden = {*SECRET_HEADERS, *(name.lower() for name in secret)}
    shown = {k: ("********" if k.lower() in hidden else v) for k, v in headers.items()}
    request = {"method": config["method"], "url": url, "headers": shown}
    if payload is not None:
        request["body"] = _excerpt(payload)
    return Call(config["method"], url, headers, payload, deadline), request


def render(template: str, variables: dict[str, Any]) -> str:
    """A template's text: its ``{{ CEL }}`` parts computed."""
    out = []
    for is_cel, piece in template_parts(template):
        if is_cel:
            value = compute(piece, variables)
            out.append(value if isinstance(value, str) else orjson.dumps(value).decode())
        else:
            out.append(piece)
    return "".join(out)


def _excerpt(body: bytes) -> Any:
    text = body[:EXCERPT].decode("utf-8", "replace")
    if len(body) <= EXCERPT:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    return text


def _output(reply: Reply) -> Any:
    """A reply's body as a step's output: JSON if it is, else its text (bounded)."""
    body = reply.body[:OUTPUT]
    if not body:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")
