"""Formulas (CEL): compiling refuses malformed ones; evaluating yields a value or None."""

from __future__ import annotations

from typing import Any

import pytest

from procession.domain.expressions import compile_formula, evaluate

DATA = {
    "data": {
        "firstname": "Ted",
        "lastname": "Mosby",
        "score": 5,
        "ratio": 1.5,
        "tags": ["a", "b", "c"],
        "address": {"city": "New York"},
        "vip": True,
        "nothing": None,
    }
}


@pytest.mark.parametrize(
    "source", ["", " ", "1 +", "data.", "((", "data.x +* 2", "foo(", '"unterminated', "a ? b"]
)
def test_compile_refuses_malformed_formulas(source: str) -> None:
    with pytest.raises(ValueError, match="Failed to parse expression") as e:
        compile_formula(source)
    assert "\n" not in str(e.value), "the message is the parser's first line only"
    assert "<input>:1:" in str(e.value), "the message points at the position"


def test_compile_accepts_a_formula_and_caches_the_program() -> None:
    program = compile_formula("data.score + 1")
    assert program is compile_formula("data.score + 1")
    assert program.execute({"data": {"score": 1}}) == 2


def test_compile_does_not_cache_failures() -> None:
    for _ in range(2):
        with pytest.raises(ValueError):
            compile_formula("1 +")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('data.firstname + " " + data.lastname', "Ted Mosby"),
        ("data.score * 2", 10),
        ("data.score - 7", -2),
        ("data.ratio * 2.0", 3.0),
        ("double(data.score) * 1.5", 7.5),
        ("data.score > 3", True),
        ('data.score > 50 ? "hot" : "cold"', "cold"),
        ("size(data.tags)", 3),
        ("data.tags.exists(t, t == 'b')", True),
        ("data.address.city", "New York"),
        ("has(data.score)", True),
        ("has(data.missing)", False),
        ("data.vip && data.score == 5", True),
        ("string(data.score)", "5"),
        ('data.firstname.startsWith("T")', True),
        ("{'k': data.score}", {"k": 5}),
        ("data.nothing", None),
    ],
)
def test_evaluate_returns_the_value(source: str, expected: Any) -> None:
    got = evaluate(source, DATA)
    assert (type(got), got) == (type(expected), expected)


@pytest.mark.parametrize(
    "source",
    [
        "data.missing",  # a missing value
        'data.firstname + " " + data.missing',
        "data.score + data.firstname",  # a type mismatch
        "data.score * 1.5",  # CEL has no implicit int -> double
        '"a" + 1',
        "data.score / 0",  # division by zero
        "data.tags[5]",  # out of range
        "unknown_fn(1)",  # unknown function
        "1 +",  # malformed
    ],
)
def test_evaluate_yields_none_when_the_formula_cannot_be_computed(source: str) -> None:
    assert evaluate(source, DATA) is None


def test_evaluate_without_variables() -> None:
    assert evaluate("1 + 2", {}) == 3
    assert evaluate("data.x", {}) is None
