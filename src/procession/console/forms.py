"""Attribute values in forms: the input that fits each attribute type, and a form's text turned into the
value the API would have been sent (the domain then checks it as it checks any client's)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

NUMBERS = {"integer": "1", "integerId": "1", "float": "any", "decimal": "any", "number": "any"}
PLAIN = {"email": "email", "phone": "tel", "url": "url", "date": "date", "time": "time"}
STRUCTURED = ("json", "externalObject", "multiExternalObjects", "geolocation")
FILES = ("photo", "multiPhotos", "document", "multiDocuments")
ENUMS = ("stringEnum", "integerEnum")
MULTI_ENUMS = ("multiStringEnum", "multiIntegerEnum")


def input_kind(attr: dict[str, Any]) -> dict[str, Any]:
    """How a form asks for a value of ``attr``: the tag and its attributes."""
    kind = attr["type"]
    if kind in NUMBERS:
        return {"tag": "input", "type": "number", "step": NUMBERS[kind]}
    if kind in PLAIN:
        return {"tag": "input", "type": PLAIN[kind]}
    if kind in ("datetime", "datetimeISO8601"):
        return {"tag": "input", "type": "datetime-local", "step": "1", "note": "UTC"}
    if kind == "boolean":
        return {"tag": "select", "options": ["", "true", "false"]}
    if kind in ENUMS:
        return {"tag": "select", "options": ["", *map(str, attr.get("options", []))]}
    if kind in MULTI_ENUMS:
        return {"tag": "select", "multiple": True, "options": list(map(str, attr.get("options", [])))}
    if kind == "user":
        return {"tag": "user"}
    if kind in STRUCTURED:
        return {"tag": "textarea", "note": "JSON"}
    if kind == "text":
        return {"tag": "textarea"}
    if kind in FILES:
        return {"tag": "none", "note": "files are uploaded through the API"}
    return {"tag": "input", "type": "text"}


def form_value(attr: dict[str, Any], raw: list[str]) -> Any:
    """The value a form sent for ``attr`` (``raw``: every value under its name), or None when left blank;
    ``ValueError`` for text that cannot be the type's (the domain checks the rest)."""
    kind = attr["type"]
    if kind in MULTI_ENUMS:
        return [int(v) if kind == "multiIntegerEnum" else v for v in raw if v] or None
    text = raw[-1].strip() if raw else ""
    if text == "" or kind in FILES:
        return None
    if kind in ("integer", "integerId", "integerEnum"):
        try:
            return int(text)
        except ValueError:
            raise ValueError("must be a whole number") from None
    if kind in ("float", "decimal", "number"):
        try:
            return float(text)
        except ValueError:
            raise ValueError("must be a number") from None
    if kind == "boolean":
        return text == "true"
    if kind in ("datetime", "datetimeISO8601"):
        try:
            moment = datetime.fromisoformat(text).replace(tzinfo=UTC)
        except ValueError:
            raise ValueError("must be a date and time") from None
        return int(moment.timestamp() * 1000) if kind == "datetime" else moment.isoformat()
    if kind in STRUCTURED:
        try:
            return json.loads(text)
        except ValueError as e:
            raise ValueError(f"is not JSON ({e})") from None
    return text


def shown(attr: dict[str, Any], value: Any) -> str:
    """A stored value as a person reads it."""
    if value is None:
        return ""
    if attr.get("type") == "datetime" and isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def form_text(attr: dict[str, Any], value: Any, users: dict[str, dict[str, Any]]) -> list[str]:
    """A stored value as the text its input holds (``form_value`` reads it back); ``users`` by id, for a
    user attribute's username."""
    kind = attr["type"]
    if value is None or kind in FILES:
        return []
    if kind in MULTI_ENUMS:
        return [str(v) for v in value]
    if kind == "boolean":
        return ["true" if value else "false"]
    if kind == "datetime" and isinstance(value, int | float):
        return [datetime.fromtimestamp(value / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")]
    if kind == "datetimeISO8601" and isinstance(value, str):
        try:
            return [datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")]
        except ValueError:
            return [value]
    if kind == "user":
        return [str((users.get(value) or {}).get("username", value))]
    if kind in STRUCTURED:
        return [json.dumps(value, ensure_ascii=False)]
    return [str(value)]
