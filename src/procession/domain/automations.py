"""Automations ("API processes"): a trigger, an optional condition and ordered steps, kept as data in their
procedure's definition (ids throughout) and checked whole when saved, so that no expression is first found
malformed at run time. Every computed value is CEL (``expressions``): a condition, a step's ``when``, a
body, and the ``{{ … }}`` parts of a URL or a header (a template is literal text around CEL, nothing more).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from procession.domain.attributes import number
from procession.domain.connectors import Connector
from procession.domain.errors import Invalid
from procession.domain.steps import STATUSES, Checker, Step, parse_step

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

MAX_STEPS = 50


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
    c = Checker()
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
        step = parse_step(c, raw, i, procedure, procedures, check_url, connectors or {})
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


def _trigger(c: Checker, raw: dict[str, Any], procedure: Procedure) -> Trigger:
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
