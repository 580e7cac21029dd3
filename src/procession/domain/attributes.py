"""Attribute types: each validates a value and returns its normalised, stored form.

A normaliser takes the raw JSON value, the attribute and a ``Lookups`` (references to other rows of
the team: users, files, records, processes) and returns the value to store, or raises ``ValueError``
with a message for the person who sent it.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol
from urllib.parse import urlsplit

import jsonschema


class Lookups(Protocol):
    """References an attribute value may point at, all within one team."""

    def user_id(self, ref: str) -> str | None:
        """The id of the user with this id or username."""

    def file_exists(self, file_id: str) -> bool:
        """Whether an uploaded file with this id exists."""

    def record_exists(self, record_id: str, entity_id: str | None) -> bool:
        """Whether the record exists (of this entity, when given)."""

    def process_exists(self, process_id: str, procedure_id: str | None) -> bool:
        """Whether the process exists (of this procedure, when given)."""


@dataclass
class Attribute:
    """One typed field of a procedure or an entity."""

    id: str
    short_id: str
    type: str
    label: str = ""
    required: bool = False
    options: list[Any] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    formula: str | None = None
    indexed: bool = False  # lists filter and sort on it through an index of its own (``store.indexes``)

    @property
    def derived(self) -> bool:
        return self.formula is not None

    @property
    def generated(self) -> bool:
        return self.type in ("stringId", "integerId")

    @cached_property
    def formula_inputs(self) -> frozenset[str] | None:
        """The attribute shortIds a formula reads (``data.x``); None when it reads ``data`` any other way."""
        if self.formula is None:
            return frozenset()
        names = re.findall(r"\bdata\.([A-Za-z_][A-Za-z0-9_]*)", self.formula)
        if len(names) != len(re.findall(r"\bdata\b", self.formula)):
            return None
        return frozenset(names)

    @cached_property
    def schema_validator(self) -> Any:
        """A JSON Schema validator for externalObject attributes."""
        schema = self.config.get("schema") or {"type": "object"}
        cls = jsonschema.validators.validator_for(schema)
        return cls(schema)

    def normalise(self, value: Any, lookups: Lookups) -> Any:
        """The stored form of ``value``; ``None`` clears the value."""
        if value is None:
            return None
        return TYPES[self.type](value, self, lookups)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "shortId": self.short_id,
            "label": self.label,
            "type": self.type,
            "required": self.required,
        }
        if self.options:
            out["options"] = self.options
        if self.config:
            out["config"] = self.config
        if self.formula is not None:
            out["formula"] = self.formula
        if self.indexed:
            out["indexed"] = True
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Attribute:
        return cls(
            id=d["id"],
            short_id=d["shortId"],
            type=d["type"],
            label=d.get("label", ""),
            required=d.get("required", False),
            options=d.get("options", []),
            config=d.get("config", {}),
            formula=d.get("formula"),
            indexed=d.get("indexed", False),
        )


Normaliser = Callable[[Any, Attribute, Lookups], Any]

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE = re.compile(r"^\+?[0-9]{4,20}$")
DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
TIME = re.compile(r"^[0-9]{2}:[0-9]{2}(:[0-9]{2})?$")
INT_STR = re.compile(r"^-?[0-9]+$")
NUM_STR = re.compile(r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$")


def number(value: Any) -> bool:
    """Whether ``value`` is a finite JSON number: an int or a float, never a boolean (which Python counts as
    an int: ``true`` would pass for 1)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _string(value: Any, attr: Attribute, _: Lookups, *, default_max: int = 1000) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if "\x00" in value:  # PostgreSQL stores no such text: refused alike on both databases
        raise ValueError("must not hold the NUL character (\\u0000)")
    limit = int(attr.config.get("maxLength", default_max))
    if len(value) > limit:
        raise ValueError(f"must be at most {limit} characters")
    return value


def _text(value: Any, attr: Attribute, lookups: Lookups) -> str:
    return _string(value, attr, lookups, default_max=100_000)


def _name(value: Any, attr: Attribute, lookups: Lookups) -> str:
    text = " ".join(_string(value, attr, lookups, default_max=200).split())
    if not text:
        raise ValueError("must not be blank")
    return text


def _email(value: Any, attr: Attribute, lookups: Lookups) -> str:
    text = _string(value, attr, lookups, default_max=254).strip()
    if not EMAIL.match(text):
        raise ValueError(f"{text!r} is not an email address")
    local, domain = text.rsplit("@", 1)
    return f"{local}@{domain.lower()}"


def _phone(value: Any, attr: Attribute, lookups: Lookups) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = re.sub(r"[\s\-().]", "", _string(value, attr, lookups, default_max=40))
    if not PHONE.match(text):
        raise ValueError(f"{value!r} is not a phone number")
    return text


def _url(value: Any, attr: Attribute, lookups: Lookups) -> str:
    text = _string(value, attr, lookups, default_max=2000).strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{text!r} is not an http(s) URL")
    return text


def _integer(value: Any, attr: Attribute, _: Lookups) -> int:
    if isinstance(value, bool):
        raise ValueError("must be an integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        # out here a float stands for many integers (JSON's -2**63 - 1 reads as -2**63): out of range
        number = int(value) if abs(value) < 2**63 else 2**63
    elif isinstance(value, str) and INT_STR.match(value.strip()):
        number = int(value.strip())
    else:
        raise ValueError("must be an integer")
    if not -(2**63) <= number <= 2**63 - 1:
        raise ValueError("is out of range (64-bit integer)")
    return _bounded(number, attr)


def _number(value: Any, attr: Attribute, _: Lookups) -> int | float:
    if isinstance(value, bool):
        raise ValueError("must be a number")
    if isinstance(value, str):
        if not NUM_STR.match(value.strip()):
            raise ValueError("must be a number")
        value = float(value.strip())
    try:
        finite = isinstance(value, (int, float)) and math.isfinite(value)
    except OverflowError:
        finite = False
    if not finite:
        raise ValueError("must be a finite number within range")
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        value = int(value)
    return _bounded(value, attr)


def _bounded(number: Any, attr: Attribute) -> Any:
    lo, hi = attr.config.get("min"), attr.config.get("max")
    if lo is not None and number < lo:
        raise ValueError(f"must be at least {lo}")
    if hi is not None and number > hi:
        raise ValueError(f"must be at most {hi}")
    return number


def _boolean(value: Any, _attr: Attribute, _: Lookups) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise ValueError("must be true or false")


def _one_of(value: Any, attr: Attribute) -> Any:
    if value not in attr.options:
        raise ValueError(f"{value!r} is not one of {attr.options}")
    return value


def _string_enum(value: Any, attr: Attribute, _: Lookups) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return _one_of(value, attr)


def _integer_enum(value: Any, attr: Attribute, lookups: Lookups) -> int:
    return _one_of(_integer(value, attr, lookups), attr)


def _many(one: Normaliser) -> Normaliser:
    def normalise(value: Any, attr: Attribute, lookups: Lookups) -> list[Any]:
        if not isinstance(value, list):
            raise ValueError("must be a list")
        out: list[Any] = []
        for i, item in enumerate(value):
            try:
                item = one(item, attr, lookups)
            except ValueError as e:
                raise ValueError(f"item {i}: {e}") from None
            if item not in out:
                out.append(item)
        return out

    return normalise


def _date(value: Any, _attr: Attribute, _: Lookups) -> str:
    if not isinstance(value, str) or not DATE.match(value):
        raise ValueError("must be a date as YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ValueError(f"{value!r} is not a valid date") from None


def _time(value: Any, _attr: Attribute, _: Lookups) -> str:
    if not isinstance(value, str) or not TIME.match(value):
        raise ValueError("must be a time as HH:MM or HH:MM:SS")
    try:
        return dt.time.fromisoformat(value).isoformat(timespec="seconds")
    except ValueError:
        raise ValueError(f"{value!r} is not a valid time") from None


def epoch_ms(value: Any) -> int:
    """An epoch-milliseconds value given as a number or a numeric string."""
    if isinstance(value, bool):
        raise ValueError("must be epoch milliseconds")
    if isinstance(value, str) and INT_STR.match(value.strip()):
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or not 0 <= value < 253402300800000:
        raise ValueError("must be epoch milliseconds (a non-negative integer before year 10000)")
    return value


def _datetime(value: Any, _attr: Attribute, _: Lookups) -> int:
    return epoch_ms(value)


def parse_iso(value: str) -> dt.datetime:
    """An ISO 8601 date-time in UTC (naive ones are taken as UTC)."""
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    try:
        return moment.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError(f"{value!r} is outside the supported range of dates") from None


def _datetime_iso(value: Any, _attr: Attribute, _: Lookups) -> str:
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date-time string")
    return parse_iso(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _string_id(value: Any, attr: Attribute, lookups: Lookups) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = _string(value, attr, lookups, default_max=200).strip()
    if not text:
        raise ValueError("must not be blank")
    return text


def _file(value: Any, _attr: Attribute, lookups: Lookups) -> str:
    if not isinstance(value, str) or not lookups.file_exists(value):
        raise ValueError(f"{value!r} is not the id of an uploaded file")
    return value


def _external_object(value: Any, attr: Attribute, _: Lookups) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    error = jsonschema.exceptions.best_match(attr.schema_validator.iter_errors(value))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)
        raise ValueError(f"does not match the schema{' at ' + where if where else ''}: {error.message}")
    return value


def _geolocation(value: Any, _attr: Attribute, _: Lookups) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ValueError("must be an object with lat and lng")
    lat, lng = (
        value.get("lat", value.get("latitude")),
        value.get("lng", value.get("lon", value.get("longitude"))),
    )
    for name, number, bound in (("lat", lat, 90), ("lng", lng, 180)):
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not -bound <= number <= bound:
            raise ValueError(f"{name} must be a number between -{bound} and {bound}")
    return {"lat": float(lat), "lng": float(lng)}  # type: ignore[arg-type]


def _json(value: Any, _attr: Attribute, _: Lookups) -> Any:
    return value


def _user(value: Any, _attr: Attribute, lookups: Lookups) -> str:
    user_id = lookups.user_id(value) if isinstance(value, str) else None
    if user_id is None:
        raise ValueError(f"{value!r} is not a user of this team")
    return user_id


def _record(value: Any, attr: Attribute, lookups: Lookups) -> str:
    if not isinstance(value, str) or not lookups.record_exists(value, attr.config.get("entity")):
        raise ValueError(f"{value!r} is not a record of this team")
    return value


def _process(value: Any, attr: Attribute, lookups: Lookups) -> str:
    if not isinstance(value, str) or not lookups.process_exists(value, attr.config.get("procedure")):
        raise ValueError(f"{value!r} is not a process of this team")
    return value


TYPES: dict[str, Normaliser] = {
    "string": _string,
    "text": _text,
    "name": _name,
    "email": _email,
    "phone": _phone,
    "url": _url,
    "integer": _integer,
    "float": _number,
    "decimal": _number,
    "number": _number,
    "boolean": _boolean,
    "stringEnum": _string_enum,
    "integerEnum": _integer_enum,
    "multiStringEnum": _many(_string_enum),
    "multiIntegerEnum": _many(_integer_enum),
    "date": _date,
    "time": _time,
    "datetime": _datetime,
    "datetimeISO8601": _datetime_iso,
    "stringId": _string_id,
    "integerId": _integer,
    "photo": _file,
    "multiPhotos": _many(_file),
    "document": _file,
    "multiDocuments": _many(_file),
    "externalObject": _external_object,
    "multiExternalObjects": _many(_external_object),
    "geolocation": _geolocation,
    "json": _json,
    "user": _user,
    "record": _record,
    "process": _process,
}
