"""An automation's steps: each type's settings, checked when the automation is saved (every error collected,
each naming where it is), and kept in a stored form the runner reads. A computed value is CEL; a URL or a
header is a template: literal text around ``{{ CEL }}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from procession.domain.attributes import number
from procession.domain.connectors import Connector, check_connector, check_dropbox, check_hubspot
from procession.domain.errors import FieldError, Invalid
from procession.domain.expressions import compile_formula

if TYPE_CHECKING:
    from procession.domain.procedure import Procedure

STEPS = ("http", "webhook", "update_process", "create_process", "wait", "hubspot.upsert", "dropbox.upload")
CONNECTOR_STEPS = {"hubspot.upsert": "hubspot", "dropbox.upload": "dropbox"}  # step type -> connector kind

STATUSES = ("OPEN", "COMPLETED", "CANCELLED")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MAX_TIMEOUT_MS = 30_000  # a call's deadline: well inside the lease a worker holds a run by
DEFAULT_TIMEOUT_MS = 10_000
_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.S)
_POSITION = re.compile(r"<input>:(\d+):(\d+): (.*)")


@dataclass(frozen=True)
class Step:
    name: str
    type: str
    when: str | None
    config: dict[str, Any]  # the type's, stored form (see ``parse_step``)

    @property
    def timeout_ms(self) -> int:
        return int(self.config.get("timeoutMs", DEFAULT_TIMEOUT_MS))


def template_parts(text: str) -> list[tuple[bool, str]]:
    """A template as (is_cel, text) parts: literal text around ``{{ CEL }}``."""
    parts: list[tuple[bool, str]] = []
    for n, piece in enumerate(_TEMPLATE.split(text)):
        if n % 2:
            parts.append((True, piece.strip()))
        elif piece:
            parts.append((False, piece))
    return parts


class Checker:
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


def parse_step(
    c: Checker,
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
    c: Checker, raw: dict[str, Any], at: str, what: str, procedure: Procedure
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
