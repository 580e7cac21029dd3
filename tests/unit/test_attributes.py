"""Attribute types: every type's valid inputs and stored forms, its refusals, and the edge cases."""

from __future__ import annotations

from typing import Any

import pytest

from procession.domain.attributes import TYPES, Attribute, epoch_ms
from tests.unit.fakes import FakeLookups, team_lookups

LOOKUPS = team_lookups()
LEVELS = ["hot", "warm", "cold"]
SCHEMA = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "amount": {"type": "number", "minimum": 0}},
    "required": ["id"],
}
NO_INVALID_INPUT = {"json"}  # any JSON value is a valid json attribute


def attr(type_: str, **kw: Any) -> Attribute:
    return Attribute(id="a-1", short_id="field", type=type_, **kw)


def typed(value: Any) -> Any:
    """``value`` with every scalar paired with its type, so that 2, 2.0 and True differ."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return (type(value).__name__, value)


def case(type_: str, value: Any, expected: Any, id: str, **kw: Any) -> Any:
    return pytest.param(type_, value, expected, kw, id=f"{type_}-{id}")


def bad(type_: str, value: Any, match: str, id: str, **kw: Any) -> Any:
    return pytest.param(type_, value, match, kw, id=f"{type_}-{id}")


VALID = [
    # strings
    case("string", "hello", "hello", "plain"),
    case("string", "  kept as given ", "  kept as given ", "whitespace-kept"),
    case("string", "", "", "empty"),
    case("string", "x" * 1000, "x" * 1000, "default-max"),
    case("string", "abc", "abc", "config-maxLength", config={"maxLength": 3}),
    case("text", "x" * 100_000, "x" * 100_000, "default-max"),
    case("text", "line 1\nline 2", "line 1\nline 2", "multiline"),
    case("name", "  Ted   Mosby ", "Ted Mosby", "spaces-collapsed"),
    case("name", "Ted\tMosby\n", "Ted Mosby", "tabs-newlines"),
    case("email", " ted.mosby@Yahoo.COM ", "ted.mosby@yahoo.com", "domain-lowercased"),
    case("email", "Ted.Mosby@example.com", "Ted.Mosby@example.com", "local-part-case-kept"),
    case("phone", "7701214822", "7701214822", "digits"),
    case("phone", "+1 (415) 555-0100", "+14155550100", "punctuation-removed"),
    case("phone", "44.20.7946.0958", "442079460958", "dots"),
    case("phone", 7701214822, "7701214822", "integer"),
    case("url", "https://example.com/a?b=1#c", "https://example.com/a?b=1#c", "https"),
    case("url", " http://example.com ", "http://example.com", "stripped"),
    # numbers
    case("integer", 5, 5, "int"),
    case("integer", -7, -7, "negative"),
    case("integer", "42", 42, "numeric-string"),
    case("integer", " -7 ", -7, "numeric-string-spaces"),
    case("integer", 3.0, 3, "integral-float"),
    case("integer", 2**63 - 1, 2**63 - 1, "int64-max"),
    case("integer", 10, 10, "at-min", config={"min": 10, "max": 20}),
    case("integer", 20, 20, "at-max", config={"min": 10, "max": 20}),
    case("float", 1.5, 1.5, "float"),
    case("float", "2.50", 2.5, "numeric-string"),
    case("float", 2.0, 2, "integral-float-becomes-int"),
    case("float", "3", 3, "integer-string"),
    case("float", -0.25, -0.25, "negative"),
    case("float", 1e20, 1e20, "large-float-stays-float"),
    case("decimal", "  2.50 ", 2.5, "string-spaces"),
    case("decimal", 7, 7, "int"),
    case("number", "-1e3", -1000, "exponent-string"),
    case("number", 0.5, 0.5, "at-min", config={"min": 0.5, "max": 1}),
    case("number", 1, 1, "at-max", config={"min": 0.5, "max": 1}),
    case("boolean", True, True, "true"),
    case("boolean", False, False, "false"),
    case("boolean", "true", True, "string-true"),
    case("boolean", "false", False, "string-false"),
    # enums
    case("stringEnum", "hot", "hot", "option", options=LEVELS),
    case("integerEnum", 2, 2, "option", options=[1, 2, 3]),
    case("integerEnum", "2", 2, "numeric-string", options=[1, 2, 3]),
    case("integerEnum", 2.0, 2, "integral-float", options=[1, 2, 3]),
    case("multiStringEnum", ["hot", "cold", "hot"], ["hot", "cold"], "deduplicated", options=LEVELS),
    case("multiStringEnum", [], [], "empty", options=LEVELS),
    case("multiIntegerEnum", [1, "2", 2, 3.0], [1, 2, 3], "normalised-deduplicated", options=[1, 2, 3]),
    # dates and times
    case("date", "2024-02-29", "2024-02-29", "leap-day"),
    case("time", "09:05", "09:05:00", "hh-mm"),
    case("time", "23:59:59", "23:59:59", "hh-mm-ss"),
    case("datetime", 1618558867539, 1618558867539, "epoch-ms"),
    case("datetime", "1618558867539", 1618558867539, "numeric-string"),
    case("datetime", 1618558867539.0, 1618558867539, "integral-float"),
    case("datetime", 0, 0, "epoch"),
    case("datetime", 253402300799999, 253402300799999, "last-ms-of-9999"),
    case("datetimeISO8601", "2024-01-01T10:00:00+05:30", "2024-01-01T04:30:00.000Z", "offset-to-utc"),
    case("datetimeISO8601", "2024-01-01T10:00:00Z", "2024-01-01T10:00:00.000Z", "zulu"),
    case("datetimeISO8601", "2024-01-01T10:00:00", "2024-01-01T10:00:00.000Z", "naive-is-utc"),
    case("datetimeISO8601", "2024-01-01T10:00:00.123456Z", "2024-01-01T10:00:00.123Z", "to-milliseconds"),
    case("datetimeISO8601", "2024-01-01", "2024-01-01T00:00:00.000Z", "date-only-is-midnight"),
    # ids
    case("stringId", "LEAD-910", "LEAD-910", "string"),
    case("stringId", "  LEAD-1 ", "LEAD-1", "stripped"),
    case("stringId", 910, "910", "integer"),
    case("integerId", 910, 910, "int"),
    case("integerId", "910", 910, "numeric-string"),
    # files (the fake team has file-1 and file-2)
    case("photo", "file-1", "file-1", "uploaded"),
    case("multiPhotos", ["file-1", "file-2", "file-1"], ["file-1", "file-2"], "deduplicated"),
    case("document", "file-2", "file-2", "uploaded"),
    case("multiDocuments", ["file-2"], ["file-2"], "uploaded"),
    # objects
    case(
        "externalObject",
        {"id": "x", "amount": 3},
        {"id": "x", "amount": 3},
        "schema",
        config={"schema": SCHEMA},
    ),
    case("externalObject", {"any": [1, {"b": None}]}, {"any": [1, {"b": None}]}, "no-schema-any-object"),
    case(
        "multiExternalObjects",
        [{"id": "a"}, {"id": "a"}, {"id": "b"}],
        [{"id": "a"}, {"id": "b"}],
        "deduplicated",
        config={"schema": SCHEMA},
    ),
    case("geolocation", {"lat": 12.97, "lng": 77.59}, {"lat": 12.97, "lng": 77.59}, "lat-lng"),
    case("geolocation", {"latitude": 1, "longitude": 2}, {"lat": 1.0, "lng": 2.0}, "long-names-as-floats"),
    case("geolocation", {"lat": -90, "lon": 180}, {"lat": -90.0, "lng": 180.0}, "bounds-and-lon"),
    case("json", {"a": [1, {"b": None}]}, {"a": [1, {"b": None}]}, "object"),
    case("json", [1, "two"], [1, "two"], "list"),
    case("json", "text", "text", "string"),
    case("json", False, False, "false"),
    # references (the fake team: users u-1 shane.warne and u-2, record rec-1, process proc-1)
    case("user", "shane.warne", "u-1", "username-to-id"),
    case("user", "u-2", "u-2", "id"),
    case("record", "rec-1", "rec-1", "any-entity"),
    case("record", "rec-1", "rec-1", "of-entity", config={"entity": "ent-customer"}),
    case("process", "proc-1", "proc-1", "any-procedure"),
    case("process", "proc-1", "proc-1", "of-procedure", config={"procedure": "pr-lead"}),
]

INVALID = [
    bad("string", 5, "must be a string", "int"),
    bad("string", True, "must be a string", "bool"),
    bad("string", ["a"], "must be a string", "list"),
    bad("string", "x" * 1001, "at most 1000 characters", "over-default-max"),
    bad("string", "abcd", "at most 3 characters", "over-config-maxLength", config={"maxLength": 3}),
    bad("text", "x" * 100_001, "at most 100000 characters", "over-default-max"),
    bad("text", 1, "must be a string", "int"),
    bad("text", "a\x00b", "NUL character", "nul"),
    bad("email", "a\x00@b.co", "NUL character", "nul"),
    bad("name", "   ", "must not be blank", "blank"),
    bad("name", "", "must not be blank", "empty"),
    bad("name", 5, "must be a string", "int"),
    bad("name", "x" * 201, "at most 200 characters", "over-default-max"),
    bad("email", "not-an-email", "not an email address", "no-at"),
    bad("email", "ted@yahoo", "not an email address", "no-dot-in-domain"),
    bad("email", "ted mosby@yahoo.com", "not an email address", "space"),
    bad("email", "@yahoo.com", "not an email address", "no-local-part"),
    bad("email", "a@@yahoo.com", "not an email address", "double-at"),
    bad("email", 5, "must be a string", "int"),
    bad("phone", "123", "not a phone number", "too-short"),
    bad("phone", "1" * 21, "not a phone number", "too-long"),
    bad("phone", "+1-800-FLOWERS", "not a phone number", "letters"),
    bad("phone", "1+2345", "not a phone number", "plus-inside"),
    bad("phone", True, "must be a string", "bool"),
    bad("url", "ftp://example.com", "not an http", "ftp"),
    bad("url", "example.com", "not an http", "no-scheme"),
    bad("url", "http://", "not an http", "no-host"),
    bad("url", "javascript:alert(1)", "not an http", "javascript"),
    bad("url", "http://[::1", "IPv6", "broken-ipv6"),
    bad("url", 5, "must be a string", "int"),
    bad("integer", True, "must be an integer", "bool-true"),
    bad("integer", False, "must be an integer", "bool-false"),
    bad("integer", 1.5, "must be an integer", "fraction"),
    bad("integer", "1.5", "must be an integer", "fraction-string"),
    bad("integer", "abc", "must be an integer", "word"),
    bad("integer", "", "must be an integer", "empty"),
    bad("integer", float("nan"), "must be an integer", "nan"),
    bad("integer", float("inf"), "must be an integer", "inf"),
    bad("integer", [1], "must be an integer", "list"),
    bad("integer", 2**63, "out of range", "over-int64"),
    bad("integer", "9223372036854775808", "out of range", "over-int64-string"),
    bad("integer", 1e30, "out of range", "huge-float"),
    bad("integer", -(2.0**63), "out of range", "int64-min-as-float"),  # what JSON's -2**63 - 1 reads as
    bad("integer", 9, "at least 10", "under-min", config={"min": 10}),
    bad("integer", 21, "at most 20", "over-max", config={"max": 20}),
    bad("float", True, "must be a number", "bool"),
    bad("float", "abc", "must be a number", "word"),
    bad("float", "", "must be a number", "empty"),
    bad("float", float("nan"), "finite", "nan"),
    bad("float", float("inf"), "finite", "inf"),
    bad("float", "nan", "must be a number", "nan-string"),
    bad("float", "-inf", "must be a number", "inf-string"),
    bad("float", "1e400", "finite", "overflowing-string"),
    bad("float", [1.5], "finite", "list"),
    bad("float", 0.4, "at least 0.5", "under-min", config={"min": 0.5}),
    bad("decimal", False, "must be a number", "bool"),
    bad("decimal", "1,5", "must be a number", "comma"),
    bad("number", 101, "at most 100", "over-max", config={"max": 100}),
    bad("number", {"n": 1}, "finite", "object"),
    bad("boolean", 1, "true or false", "one"),
    bad("boolean", 0, "true or false", "zero"),
    bad("boolean", "True", "true or false", "capitalised"),
    bad("boolean", "yes", "true or false", "yes"),
    bad("boolean", "1", "true or false", "one-string"),
    bad("stringEnum", "lukewarm", "not one of", "not-an-option", options=LEVELS),
    bad("stringEnum", "HOT", "not one of", "case-sensitive", options=LEVELS),
    bad("stringEnum", 1, "must be a string", "int-even-if-option", options=["1"]),
    bad("integerEnum", 4, "not one of", "not-an-option", options=[1, 2, 3]),
    bad("integerEnum", True, "must be an integer", "bool", options=[1, 2, 3]),
    bad("integerEnum", 1.5, "must be an integer", "fraction", options=[1, 2, 3]),
    bad("integerEnum", "x", "must be an integer", "word", options=[1, 2, 3]),
    bad("multiStringEnum", "hot", "must be a list", "not-a-list", options=LEVELS),
    bad(
        "multiStringEnum", ["hot", "lukewarm"], "item 1: 'lukewarm' is not one of", "bad-item", options=LEVELS
    ),
    bad("multiStringEnum", [1], "item 0: must be a string", "int-item", options=LEVELS),
    bad("multiIntegerEnum", [1, 4], "item 1: 4 is not one of", "bad-item", options=[1, 2, 3]),
    bad("multiIntegerEnum", [True], "item 0: must be an integer", "bool-item", options=[1, 2, 3]),
    bad("multiIntegerEnum", 1, "must be a list", "not-a-list", options=[1, 2, 3]),
    bad("date", "2024-02-30", "not a valid date", "no-such-day"),
    bad("date", "2023-02-29", "not a valid date", "not-a-leap-year"),
    bad("date", "24-01-01", "YYYY-MM-DD", "short-year"),
    bad("date", "2024/01/01", "YYYY-MM-DD", "slashes"),
    bad("date", "20240101", "YYYY-MM-DD", "compact"),
    bad("date", "2024-01-01T00:00:00", "YYYY-MM-DD", "date-time"),
    bad("date", "2024-01-01\n", "not a valid date", "trailing-newline"),
    bad("date", 20240101, "YYYY-MM-DD", "int"),
    bad("time", "24:00", "not a valid time", "hour-24"),
    bad("time", "12:60", "not a valid time", "minute-60"),
    bad("time", "12:30:61", "not a valid time", "second-61"),
    bad("time", "9:05", "HH:MM", "one-digit-hour"),
    bad("time", "12:30:00.5", "HH:MM", "fraction"),
    bad("time", "12:30\n", "not a valid time", "trailing-newline"),
    bad("time", 1230, "HH:MM", "int"),
    bad("datetime", -1, "epoch milliseconds", "negative"),
    bad("datetime", "-5", "epoch milliseconds", "negative-string"),
    bad("datetime", 253402300800000, "epoch milliseconds", "year-10000"),
    bad("datetime", True, "epoch milliseconds", "bool"),
    bad("datetime", 1.5, "epoch milliseconds", "fraction"),
    bad("datetime", "2024-01-01", "epoch milliseconds", "iso-string"),
    bad("datetime", [1], "epoch milliseconds", "list"),
    bad("datetimeISO8601", "not a date", "not an ISO 8601", "word"),
    bad("datetimeISO8601", "2024-13-01T00:00:00Z", "not an ISO 8601", "month-13"),
    bad("datetimeISO8601", "", "not an ISO 8601", "empty"),
    bad("datetimeISO8601", 1618558867539, "must be an ISO 8601", "epoch-ms"),
    bad("stringId", "  ", "must not be blank", "blank"),
    bad("stringId", True, "must be a string", "bool"),
    bad("stringId", 5.0, "must be a string", "float"),
    bad("stringId", "x" * 201, "at most 200 characters", "over-default-max"),
    bad("integerId", True, "must be an integer", "bool"),
    bad("integerId", "LEAD-1", "must be an integer", "word"),
    bad("integerId", 1.5, "must be an integer", "fraction"),
    bad("photo", "file-404", "not the id of an uploaded file", "unknown"),
    bad("photo", 5, "not the id of an uploaded file", "int"),
    bad("photo", {"id": "file-1"}, "not the id of an uploaded file", "object"),
    bad("multiPhotos", "file-1", "must be a list", "not-a-list"),
    bad("multiPhotos", ["file-1", "file-404"], "item 1: 'file-404' is not the id", "bad-item"),
    bad("document", "file-404", "not the id of an uploaded file", "unknown"),
    bad("multiDocuments", ["file-404"], "item 0:", "bad-item"),
    bad("multiDocuments", {}, "must be a list", "object"),
    bad("externalObject", [{"id": "x"}], "must be a JSON object", "list", config={"schema": SCHEMA}),
    bad("externalObject", "x", "must be a JSON object", "string"),
    bad(
        "externalObject",
        {"id": 5},
        "schema at id: 5 is not of type 'string'",
        "wrong-type",
        config={"schema": SCHEMA},
    ),
    bad(
        "externalObject",
        {"amount": 3},
        "'id' is a required property",
        "missing-required",
        config={"schema": SCHEMA},
    ),
    bad(
        "externalObject",
        {"id": "x", "amount": -1},
        "schema at amount",
        "below-minimum",
        config={"schema": SCHEMA},
    ),
    bad("multiExternalObjects", {"id": "a"}, "must be a list", "not-a-list", config={"schema": SCHEMA}),
    bad(
        "multiExternalObjects",
        [{"id": "a"}, {"id": 1}],
        "item 1: does not match",
        "bad-item",
        config={"schema": SCHEMA},
    ),
    bad("geolocation", {"lat": 91, "lng": 0}, "lat must be", "lat-over-90"),
    bad("geolocation", {"lat": -90.5, "lng": 0}, "lat must be", "lat-under-minus-90"),
    bad("geolocation", {"lat": 0, "lng": -181}, "lng must be", "lng-under-minus-180"),
    bad("geolocation", {"lat": True, "lng": 0}, "lat must be", "bool"),
    bad("geolocation", {"lat": "12.9", "lng": 77}, "lat must be", "string"),
    bad("geolocation", {"lat": float("nan"), "lng": 0}, "lat must be", "nan"),
    bad("geolocation", {"lng": 1}, "lat must be", "missing-lat"),
    bad("geolocation", {"lat": 1}, "lng must be", "missing-lng"),
    bad("geolocation", [12.9, 77.5], "must be an object", "list"),
    bad("geolocation", "12.9,77.5", "must be an object", "string"),
    bad("user", "nobody", "not a user of this team", "unknown"),
    bad("user", "", "not a user of this team", "empty"),
    bad("user", 5, "not a user of this team", "int"),
    bad("record", "rec-404", "not a record of this team", "unknown"),
    bad("record", "rec-1", "not a record of this team", "other-entity", config={"entity": "ent-other"}),
    bad("record", 5, "not a record of this team", "int"),
    bad("process", "proc-404", "not a process of this team", "unknown"),
    bad(
        "process",
        "proc-1",
        "not a process of this team",
        "other-procedure",
        config={"procedure": "pr-ticket"},
    ),
    bad("process", ["proc-1"], "not a process of this team", "list"),
]


@pytest.mark.parametrize(("type_", "value", "expected", "kw"), VALID)
def test_valid_value_is_stored_normalised(type_: str, value: Any, expected: Any, kw: dict[str, Any]) -> None:
    assert typed(attr(type_, **kw).normalise(value, LOOKUPS)) == typed(expected)


@pytest.mark.parametrize(("type_", "value", "match", "kw"), INVALID)
def test_invalid_value_raises_value_error(type_: str, value: Any, match: str, kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=match):
        attr(type_, **kw).normalise(value, LOOKUPS)


def test_every_type_has_valid_and_invalid_cases() -> None:
    valid = {p.values[0] for p in VALID}
    invalid = {p.values[0] for p in INVALID}
    assert valid == set(TYPES), "a type without a valid-input case"
    assert invalid == set(TYPES) - NO_INVALID_INPUT, "a type without an invalid-input case"


@pytest.mark.parametrize("type_", sorted(TYPES))
def test_none_clears_every_type(type_: str) -> None:
    assert attr(type_, options=[1], config={"schema": SCHEMA}).normalise(None, FakeLookups()) is None


@pytest.mark.parametrize("type_", ["photo", "document", "user", "record", "process"])
def test_references_are_checked_against_the_team(type_: str) -> None:
    """A reference valid in one team is refused in a team that does not hold it."""
    value = {"photo": "file-1", "document": "file-1", "user": "u-1", "record": "rec-1", "process": "proc-1"}
    assert attr(type_).normalise(value[type_], LOOKUPS) is not None
    with pytest.raises(ValueError):
        attr(type_).normalise(value[type_], FakeLookups())


def test_lookups_receive_the_configured_entity_and_procedure() -> None:
    calls: list[tuple[str, str | None]] = []

    class Recording(FakeLookups):
        def record_exists(self, record_id: str, entity_id: str | None) -> bool:
            calls.append((record_id, entity_id))
            return True

        def process_exists(self, process_id: str, procedure_id: str | None) -> bool:
            calls.append((process_id, procedure_id))
            return True

    lookups = Recording()
    attr("record", config={"entity": "ent-customer"}).normalise("rec-9", lookups)
    attr("record").normalise("rec-8", lookups)
    attr("process", config={"procedure": "pr-lead"}).normalise("proc-9", lookups)
    assert calls == [("rec-9", "ent-customer"), ("rec-8", None), ("proc-9", "pr-lead")]


def test_external_object_schema_validator_is_built_once_per_attribute() -> None:
    a = attr("externalObject", config={"schema": SCHEMA})
    assert a.schema_validator is a.schema_validator
    assert a.schema_validator.schema == SCHEMA
    assert attr("externalObject").schema_validator.schema == {"type": "object"}


def test_multi_values_keep_first_seen_order() -> None:
    got = attr("multiStringEnum", options=LEVELS).normalise(["cold", "hot", "cold", "warm"], LOOKUPS)
    assert got == ["cold", "hot", "warm"]


def test_integer_config_bounds_accept_numeric_strings() -> None:
    a = attr("integer", config={"min": 1, "max": 5})
    assert a.normalise("5", LOOKUPS) == 5
    with pytest.raises(ValueError, match="at most 5"):
        a.normalise("6", LOOKUPS)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0), ("1616253910842", 1616253910842), (" 42 ", 42), (5.0, 5), (253402300799999, 253402300799999)],
)
def test_epoch_ms_accepts_numbers_and_numeric_strings(value: Any, expected: int) -> None:
    assert typed(epoch_ms(value)) == typed(expected)


@pytest.mark.parametrize("value", [True, False, -1, 253402300800000, 1.5, "1.5", "soon", None, [1]])
def test_epoch_ms_refuses_everything_else(value: Any) -> None:
    with pytest.raises(ValueError, match="epoch milliseconds"):
        epoch_ms(value)


def test_attribute_dict_round_trip() -> None:
    full = Attribute(
        id="a-1",
        short_id="level",
        type="stringEnum",
        label="Level",
        required=True,
        options=LEVELS,
        config={"x": 1},
        formula='"hot"',
    )
    assert full.to_dict() == {
        "id": "a-1",
        "shortId": "level",
        "label": "Level",
        "type": "stringEnum",
        "required": True,
        "options": LEVELS,
        "config": {"x": 1},
        "formula": '"hot"',
    }
    assert Attribute.from_dict(full.to_dict()) == full
    bare = attr("string")
    assert set(bare.to_dict()) == {"id", "shortId", "label", "type", "required"}
    assert Attribute.from_dict(bare.to_dict()) == bare


@pytest.mark.parametrize(("type_", "generated"), [("stringId", True), ("integerId", True), ("string", False)])
def test_generated_types(type_: str, generated: bool) -> None:
    assert attr(type_).generated is generated


def test_derived_means_has_formula() -> None:
    assert attr("string", formula="data.x").derived
    assert not attr("string").derived


# Bugs: values a client can send that raise something other than ValueError (a 500, not a 422).


@pytest.mark.parametrize("type_", ["float", "decimal", "number"])
def test_huge_integer_for_a_number_type_is_a_value_error(type_: str) -> None:
    with pytest.raises(ValueError):
        attr(type_).normalise(10**400, LOOKUPS)


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_iso_datetime_outside_utc_range_is_a_value_error(value: str) -> None:
    with pytest.raises(ValueError):
        attr("datetimeISO8601").normalise(value, LOOKUPS)


def test_integer_accepts_int64_minimum() -> None:
    assert attr("integer").normalise(-(2**63), LOOKUPS) == -(2**63)
