"""A query's limits (``too_complex`` past them, naming the limit) and values that cannot be compared."""

from __future__ import annotations

from typing import Any

import pytest

from procession.domain.errors import Invalid
from procession.domain.query import MAX_ALL_VALUES, MAX_DEPTH, MAX_NODES, MAX_SORT_KEYS, MAX_VALUES, Parser
from tests.unit.fakes import FakeLookups, team_lookups
from tests.unit.test_process import lead


class Refs(FakeLookups):
    def pod_id(self, ref: str) -> str | None:
        return None


def parser() -> Parser:
    refs = Refs(**{k: getattr(team_lookups(), k) for k in ("users", "files", "records", "processes")})
    return Parser(lead(), refs)


def nested(depth: int) -> dict:
    query: dict = {"score": 1}
    for i in range(depth):
        query = {"and" if i % 2 else "or": [query, {"firstname": f"n{i}"}]}
    return query


def refused(code: str, where: Any = None, sort: Any = None) -> Invalid:
    with pytest.raises(Invalid) as caught:
        p = parser()
        p.where(where or {})
        p.sort(sort or [])
    assert caught.value.errors[0].code == code, caught.value.errors
    return caught.value


@pytest.mark.parametrize(
    "where",
    [
        {"or": [{"score": i} for i in range(MAX_NODES - 1)]},
        nested(MAX_DEPTH),
        {"firstname": [f"n{i}" for i in range(MAX_VALUES)]},
        {
            "firstname": [f"n{i}" for i in range(MAX_VALUES)],
            "lastname": [str(i) for i in range(MAX_ALL_VALUES - MAX_VALUES)],
        },
        {"score": {"=": 1, "!=": 2, ">": 0, ">=": 0, "<": 9, "<=": 9}},
    ],
)
def test_queries_at_the_limits_are_taken(where: dict) -> None:
    parser().where(where)


@pytest.mark.parametrize(
    ("where", "field", "limit"),
    [
        ({"or": [{"score": i} for i in range(1000)]}, "where", MAX_NODES),
        ({"and": [{} for _ in range(MAX_NODES)]}, "where", MAX_NODES),
        (nested(MAX_DEPTH + 1), None, MAX_DEPTH),
        (nested(5_000), None, MAX_DEPTH),  # refused as read: no recursion past the limit
        ({"score": list(range(65_536))}, "where.score", "1,000"),
        ({"or": [{"firstname": [f"n{i}" for i in range(MAX_VALUES)]}] * 3}, "where.or[2].firstname", "2,000"),
    ],
)
def test_queries_past_a_limit_are_too_complex(where: dict, field: str | None, limit: Any) -> None:
    error = refused("too_complex", where=where).errors[0]
    assert str(limit) in error.message
    assert field is None or error.field == field


def test_sort_keys_are_limited() -> None:
    parser().sort([{"field": "score"}] * MAX_SORT_KEYS)
    assert refused("too_complex", sort=[{"field": "score"}] * (MAX_SORT_KEYS + 1)).errors[0].field == "sort"
    refused("too_complex", sort=[{"field": "nope"}] * 1000)  # the count first: no lookup of a thousand keys


@pytest.mark.parametrize(
    "where",
    [
        {"state": {"=": {"a": 1}}},  # not a string: no lookup of an unhashable value
        {"state": [["NEW"]]},
        {"fullname": {"=": {"a": 1}}},  # a derived attribute: the value as sent, so checked here
        {"fullname": [[1]]},
        {"double": 2**70},  # past 64 bits: SQLite cannot bind it
        {"double": float("inf")},
    ],
)
def test_values_that_cannot_be_compared_are_invalid(where: dict) -> None:
    assert refused("invalid_value", where=where).errors[0].field.startswith("where.")
