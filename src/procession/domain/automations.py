"""Automations ("API processes"): a trigger, an optional condition and ordered steps, kept as data in their
procedure's definition (ids throughout) and checked whole when saved, so that no expression is first found
malformed at run time. Every computed value is CEL (``expressions``): a condition, a step's ``when``, a
body, and the ``{{ … }}`` parts of a URL or a header (a template is literal text around CEL, nothing more).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from procession.domain.attributes import number
from procession.domain.connectors import Connector, check_connector, check_dropbox, check_hubspot
from procession.domain.errors import FieldError, Invalid
from procession.domain.expressions import compile_formula

if TYPE_CHECKING:
    from procession.domain.procedure import Procedure

TRIGGERS = (
    "created",
    "state_reached",
    "status_reached",
    "attribute_changed",
    "next_action_due",
    "date_offset",
    "manual",
)
TIMED = ("next_action_due", "date_offset")  # fire at a time a save sets, not at the save
STEPS = ("http", "webhook", "update_process", "create_process", "wait", "hubspot.upsert", "dropbox.upload")
CONNECTOR_STEPS = {"hubspot.upsert": "hubspot", "dropbox.upload": "dropbox"}  # step type -> connector kind

STATUSES = ("OPEN", "COMPLETED", "CANCELLED")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MAX_STEPS = 50
MAX_TIMEOUT_MS = 30_000  # a call's deadline: well inside the lease a worker holds a run by
DEFAULT_TIMEOUT_MS = 10_000
_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.S)
_POSITION = re.compile(r"<input>:(\d+):(\d+): (.*)")


@dataclass(frozen=True)
class Trigger:
    type: str
    state: str | None = None  # state id (state_reached)
    status: str | None = None  # status_reached
    attribute: str | None = None  # attribute id (attribute_changed, date_offset)
    to: Any = None  # attribute_changed: the value it must change to, if ``has_to``
    has_to: bool = False
    offset_ms: int = 0  # date_offset: after (or, negative, before) the attribute's time


@dataclass(frozen=True)
class Step:
    name: str
    type: str
    when: str | None
    config: dict[str, Any]  # the type's, stored form (see ``_step``)

    @property
    def timeout_ms(self) -> int:
        return int(self.config.get("timeoutMs", DEFAULT_TIMEOUT_MS))


@dataclass(frozen=True)
class Automation:
    id: str
    name: str
    enabled: bool
    version: int
    trigger: Trigger
    condition: str | None
    steps: tuple[Step, ...]
    concurrency: int | None = None  # runs of it at once, across processes
    max_attempts: int = 5  # of a step, before the run fails
    backoff_ms: int = 1000  # after a step's first failed attempt; doubled after each
    extra: dict[str, Any] = field(default_factory=dict)

    def stored(self) -> dict[str, Any]:
        t = self.trigger
        trigger: dict[str, Any] = {
            "type": t.type,
            "state": t.state,
            "status": t.status,
            "attribute": t.attribute,
        }
        if t.has_to:
            trigger["to"] = t.to
        if t.offset_ms:
            trigger["offsetMs"] = t.offset_ms
        return {
            "id": self.id,
            "name": self.name,
            "enabled": self.enabled,
            "version": self.version,
            "trigger": {k: v for k, v in trigger.items() if v is not None},
            "condition": self.condition,
            "steps": [{"name": s.name, "type": s.type, "when": s.when, **s.config} for s in self.steps],
            "concurrency": self.concurrency,
            "retry": {"maxAttempts": self.max_attempts, "backoffMs": self.backoff_ms},
        }

    @classmethod
    def from_stored(cls, d: dict[str, Any]) -> Automation:
        t = d["trigger"]
        trigger = Trigger(
            t["type"],
            t.get("state"),
            t.get("status"),
            t.get("attribute"),
            t.get("to"),
            "to" in t,
            int(t.get("offsetMs", 0)),
        )
        steps = tuple(
            Step(s["name"], s["type"], s.get("when"), {k: v for k, v in s.items() if k not in _STEP_KEYS})
            for s in d["steps"]
        )
        retry = d.get("retry") or {}
        return cls(
            d["id"],
            d["name"],
            d["enabled"],
            d["version"],
            trigger,
            d.get("condition"),
            steps,
            d.get("concurrency"),
            int(retry.get("maxAttempts", 5)),
            int(retry.get("backoffMs", 1000)),
        )

    def public(self, procedure: Procedure) -> dict[str, Any]:
        """The API's form: shortIds for states and attributes, secrets hidden."""
        out = self.stored()
        trigger = out["trigger"]
        if "state" in trigger:
            trigger["state"] = procedure.state_short(trigger["state"])
        if "attribute" in trigger:
            trigger["attribute"] = _short(procedure, trigger["attribute"])
        for step in out["steps"]:
            if "secret" in step:
                step["secret"] = "whsec_********"
            if step["type"] == "update_process":
                step["data"] = {_short(procedure, k): v for k, v in step.get("data", {}).items()}
                if step.get("state"):
                    step["state"] = procedure.state_short(step["state"])
        out["retry"] = {"maxAttempts": self.max_attempts, "backoffSeconds": self.backoff_ms / 1000}
        return out


_STEP_KEYS = ("name", "type", "when")


def _short(procedure: Procedure, attribute_id: str) -> str:
    attr = procedure.by_id.get(attribute_id)
    return attr.short_id if attr else attribute_id


def template_parts(text: str) -> list[tuple[bool, str]]:
    """A template as (is_cel, text) parts: literal text around ``{{ CEL }}``."""
    parts: list[tuple[bool, str]] = []
    for n, piece in enumerate(_TEMPLATE.split(text)):
        if n % 2:
            parts.append((True, piece.strip()))
        elif piece:
            parts.append((False, piece))
    return parts


class _Checker:
    """Collects every error of an automation, each naming where it is."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def error(self, code: str, message: str, where: str) -> None:
        self.errors.append(FieldError(code, message, where))

    def cel(self, source: Any, where: str, what: str) -> str | None:
        if source is None:
            return None
        if not isinstance(source, str) or not source.strip():
            self.error("invalid_expression", f"{what}: a CEL expression (a string) is needed", where)
            return None
        try:
            compile_formula(source)
        except ValueError as e:
            found = _POSITION.search(str(e))
            detail = f"line {found.group(1)}, column {found.group(2)}: {found.group(3)}" if found else str(e)
            self.error("invalid_expression", f"{what}: {detail}", where)
        return source

    def template(self, text: Any, where: str, what: str) -> str | None:
        if not isinstance(text, str):
            self.error("invalid_template", f"{what}: a string is needed", where)
            return None
        for is_cel, piece in template_parts(text):
            if is_cel:
                self.cel(piece, where, f"{what} {{{{ {piece} }}}}")
        return text


def parse_automation(
    body: dict[str, Any],
    procedure: Procedure,
    *,
    id: str,
    version: int,
    procedures: dict[str, Procedure],
    check_url: Any,
    connectors: dict[str, Connector] | None = None,
) -> Automation:
    """An automation from the API's form (shortIds), checked whole: ``Invalid`` listing every error, each
    naming its step and, for an expression, the line and column. ``procedures``: the team's, by shortId and
    id (for ``create_process``); ``check_url(url)`` raises ``ValueError`` for a URL never allowed;
    ``connectors``: the team's, by name and id (stored by id)."""
    c = _Checker()
    trigger = _trigger(c, body.get("trigger") or {}, procedure)
    condition = c.cel(body.get("condition"), "condition", "condition")
    raw_steps = body.get("steps") or []
    if trigger.type != "manual" and not raw_steps:
        c.error("no_steps", "an automation needs at least one step", "steps")
    if len(raw_steps) > MAX_STEPS:
        c.error("too_many_steps", f"at most {MAX_STEPS} steps", "steps")
    steps: list[Step] = []
    names: set[str] = set()
    for i, raw in enumerate(raw_steps[:MAX_STEPS]):
        step = _step(c, raw, i, procedure, procedures, check_url, connectors or {})
        if step is not None:
            if step.name in names:
                c.error("duplicate_step", f"two steps are called {step.name!r}", f"steps[{i}].name")
            names.add(step.name)
            steps.append(step)
    retry = body.get("retry") or {}
    if c.errors:
        raise Invalid(c.errors)
    return Automation(
        id=id,
        name=body["name"],
        enabled=bool(body.get("enabled", True)),
        version=version,
        trigger=trigger,
        condition=condition,
        steps=tuple(steps),
        concurrency=body.get("concurrency"),
        max_attempts=int(retry.get("maxAttempts", 5)),
        backoff_ms=int(float(retry.get("backoffSeconds", 1)) * 1000),
    )


def _trigger(c: _Checker, raw: dict[str, Any], procedure: Procedure) -> Trigger:
    kind = raw.get("type")
    if kind not in TRIGGERS:
        c.error("unknown_trigger", f"trigger.type must be one of {', '.join(TRIGGERS)}", "trigger.type")
        return Trigger("manual")
    state = status = attribute = None
    if kind == "state_reached":
        try:
            state = procedure.state_id(str(raw.get("state")), field_name="trigger.state")
        except Invalid as e:
            c.errors.extend(e.errors)
    if kind == "status_reached":
        status = raw.get("status")
        if status not in STATUSES:
            c.error(
                "unknown_status", f"trigger.status must be one of {', '.join(STATUSES)}", "trigger.status"
            )
    if kind in ("attribute_changed", "date_offset"):
        attr = procedure.by_short.get(str(raw.get("attribute")))
        if attr is None:
            c.error(
                "unknown_attribute",
                f"{procedure.short_id} has no attribute {raw.get('attribute')!r}",
                "trigger.attribute",
            )
        elif kind == "date_offset" and attr.type not in ("date", "datetime", "datetimeISO8601"):
            c.error(
                "not_a_date", f"{attr.short_id} is not a date or date-time attribute", "trigger.attribute"
            )
        else:
            attribute = attr.id
    offset = raw.get("offsetMinutes", 0)
    if not number(offset):
        c.error("invalid_value", "trigger.offsetMinutes must be a number", "trigger.offsetMinutes")
        offset = 0
    return Trigger(kind, state, status, attribute, raw.get("to"), "to" in raw, int(offset * 60_000))


def _step(
    c: _Checker,
    raw: Any,
    i: int,
    procedure: Procedure,
    procedures: dict[str, Procedure],
    check_url: Any,
    connectors: dict[str, Connector],
) -> Step | None:
    at = f"steps[{i}]"
    if not isinstance(raw, dict):
        c.error("invalid_step", f"step {i + 1}: an object is needed", at)
        return None
    name, kind = raw.get("name") or f"step{i + 1}", raw.get("type")
    what = f"step {i + 1} ({name})"
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", name):
        c.error(
            "invalid_name", f"{what}: a name is letters, digits and _ (it names the output)", f"{at}.name"
        )
    if kind not in STEPS:
        c.error("unknown_step", f"{what}: type must be one of {', '.join(STEPS)}", f"{at}.type")
        return None
    when = c.cel(raw.get("when"), f"{at}.when", f"{what} when")
    known = {"name", "type", "when"} | _CONFIG[kind]
    for key in sorted(set(raw) - known):
        c.error("unknown_field", f"{what}: a {kind} step has no {key!r}", f"{at}.{key}")
    config: dict[str, Any] = {}
    connector = None
    if kind in CONNECTOR_STEPS or (kind == "http" and raw.get("connector") is not None):
        connector = check_connector(c, raw, at, what, connectors, CONNECTOR_STEPS.get(kind))
    if kind in ("http", "webhook"):
        url = c.template(raw.get("url"), f"{at}.url", f"{what} url")
        if "connector" in raw:
            if url is not None and not url.startswith("/"):
                c.error(
                    "invalid_url",
                    f"{what}: with a connector, url is a path (/…) under its base URL",
                    f"{at}.url",
                )
        elif url is not None and not template_parts(url)[0][0]:  # a literal start: its scheme and host
            try:
                check_url(re.sub(_TEMPLATE, "x", url))
            except ValueError as e:
                c.error("invalid_url", f"{what}: {e}", f"{at}.url")
        config = {"url": url}
    if kind in ("http", "webhook") or kind in CONNECTOR_STEPS:
        timeout = raw.get("timeoutSeconds", DEFAULT_TIMEOUT_MS / 1000)
        if not number(timeout) or not 0 < timeout * 1000 <= MAX_TIMEOUT_MS:
            c.error(
                "invalid_value", f"{what}: timeoutSeconds is more than 0, at most 30", f"{at}.timeoutSeconds"
            )
            timeout = 1
        config |= {"timeoutMs": int(timeout * 1000)}
        if connector is not None:
            config["connector"] = connector.id
    if kind == "hubspot.upsert":
        config |= check_hubspot(c, raw, at, what)
    if kind == "dropbox.upload":
        config |= check_dropbox(c, raw, at, what)
    if kind == "http":
        method = str(raw.get("method", "POST")).upper()
        if method not in METHODS:
            c.error("invalid_value", f"{what}: method must be one of {', '.join(METHODS)}", f"{at}.method")
        headers = raw.get("headers") or {}
        if not isinstance(headers, dict):
            c.error("invalid_value", f"{what}: headers is an object", f"{at}.headers")
            headers = {}
        for h, v in headers.items():
            c.template(v, f"{at}.headers.{h}", f"{what} header {h}")
        expect = raw.get("expect")
        if expect is not None and (
            not isinstance(expect, list) or not all(isinstance(s, int) and 100 <= s < 600 for s in expect)
        ):
            c.error("invalid_value", f"{what}: expect is a list of HTTP statuses", f"{at}.expect")
        body = c.cel(raw.get("body"), f"{at}.body", f"{what} body")
        config |= {"method": method, "headers": headers, "body": body, "expect": expect}
    if kind == "webhook":
        secret = raw.get("secret")
        if not isinstance(secret, str) or not secret.startswith("whsec_") or len(secret) < 20:
            c.error("invalid_secret", f"{what}: secret is a Standard Webhooks key (whsec_…)", f"{at}.secret")
        config["secret"] = secret
    if kind == "update_process":
        config = _process_fields(c, raw, at, what, procedure)
    if kind == "create_process":
        target = procedures.get(str(raw.get("procedure")))
        if target is None:
            c.error("unknown_procedure", f"{what}: no procedure {raw.get('procedure')!r}", f"{at}.procedure")
        else:
            if target.parent != procedure.id:
                c.error(
                    "not_a_child",
                    f"{what}: {target.short_id}'s parent procedure is not {procedure.short_id}",
                    f"{at}.procedure",
                )
            config = {"procedure": target.id, **_process_fields(c, raw, at, what, target)}
    if kind == "wait":
        seconds, until = raw.get("seconds"), raw.get("until")
        if (seconds is None) == (until is None):
            c.error("invalid_wait", f"{what}: give seconds or until (a CEL time in epoch ms)", at)
        elif seconds is not None and (not number(seconds) or seconds < 0):
            c.error("invalid_value", f"{what}: seconds is a number, 0 or more", f"{at}.seconds")
        config = {"seconds": seconds, "until": c.cel(until, f"{at}.until", f"{what} until")}
    return Step(name, kind, when, config)


_CONFIG = {
    "http": {"url", "method", "headers", "body", "expect", "timeoutSeconds", "connector"},
    "hubspot.upsert": {"connector", "object", "properties", "idProperty", "timeoutSeconds"},
    "dropbox.upload": {"connector", "path", "content", "file", "timeoutSeconds"},
    "webhook": {"url", "secret", "timeoutSeconds"},
    "update_process": {"data", "state", "status", "nextActionAt"},
    "create_process": {"procedure", "data", "state", "status", "nextActionAt"},
    "wait": {"seconds", "until"},
}


def _process_fields(
    c: _Checker, raw: dict[str, Any], at: str, what: str, procedure: Procedure
) -> dict[str, Any]:
    """A step's process fields: ``data`` (shortId -> CEL, stored by attribute id), a state and a status
    (literal, checked now) and ``nextActionAt`` (CEL)."""
    data: dict[str, str] = {}
    raw_data = raw.get("data") or {}
    if not isinstance(raw_data, dict):
        c.error("invalid_value", f"{what}: data is an object of CEL expressions", f"{at}.data")
        raw_data = {}
    for key, source in raw_data.items():
        attr = procedure.by_short.get(key)
        if attr is None or attr.derived:
            c.error(
                "unknown_attribute",
                f"{what}: {procedure.short_id} has no input attribute {key!r}",
                f"{at}.data.{key}",
            )
            continue
        data[attr.id] = c.cel(source, f"{at}.data.{key}", f"{what} data.{key}") or ""
    out: dict[str, Any] = {"data": data}
    if raw.get("state") is not None:
        try:
            out["state"] = procedure.state_id(str(raw["state"]), field_name=f"{at}.state")
        except Invalid as e:
            c.errors.extend(e.errors)
    if raw.get("status") is not None:
        if raw["status"] not in STATUSES:
            c.error("unknown_status", f"{what}: status must be one of {', '.join(STATUSES)}", f"{at}.status")
        out["status"] = raw["status"]
    if raw.get("nextActionAt") is not None:
        out["nextActionAt"] = c.cel(raw["nextActionAt"], f"{at}.nextActionAt", f"{what} nextActionAt")
    return out
