"""The console's pure parts: the input each attribute type gets, a form's text turned into the value the API
would have been sent (and a stored value into the text an edit form holds, read back as the same value), and
the state graph drawn as SVG."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from procession.console.forms import form_text, form_value, input_kind, shown
from procession.console.graph import state_graph


def attr(kind: str, **more: object) -> dict[str, object]:
    return {"shortId": "x", "type": kind, **more}


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("integer", {"tag": "input", "type": "number", "step": "1"}),
        ("float", {"tag": "input", "type": "number", "step": "any"}),
        ("email", {"tag": "input", "type": "email"}),
        ("phone", {"tag": "input", "type": "tel"}),
        ("date", {"tag": "input", "type": "date"}),
        ("text", {"tag": "textarea"}),
        ("string", {"tag": "input", "type": "text"}),
        ("user", {"tag": "user"}),
    ],
)
def test_each_type_gets_an_input_that_fits(kind: str, expected: dict[str, object]) -> None:
    assert input_kind(attr(kind)) == expected


def test_enums_are_chosen_from_their_options() -> None:
    assert input_kind(attr("stringEnum", options=["low", "high"]))["options"] == ["", "low", "high"]
    multi = input_kind(attr("multiIntegerEnum", options=[1, 2]))
    assert multi["multiple"] and multi["options"] == ["1", "2"]
    assert form_value(attr("multiIntegerEnum"), ["1", "2"]) == [1, 2]


@pytest.mark.parametrize(
    ("kind", "raw", "value"),
    [
        ("integer", ["5"], 5),
        ("float", ["2.5"], 2.5),
        ("boolean", ["false"], False),
        ("string", ["  Ted "], "Ted"),
        ("string", [""], None),
        ("datetime", ["2026-12-05T06:30"], 1796452200000),
        ("json", ['{"a": 1}'], {"a": 1}),
        ("photo", ["anything"], None),
    ],
)
def test_form_text_becomes_the_value_an_api_client_sends(kind: str, raw: list[str], value: object) -> None:
    assert form_value(attr(kind), raw) == value


@pytest.mark.parametrize(
    ("kind", "raw"), [("integer", "five"), ("float", "x"), ("json", "{"), ("date" + "time", "x")]
)
def test_text_that_cannot_be_the_type_is_refused(kind: str, raw: str) -> None:
    with pytest.raises(ValueError):
        form_value(attr(kind), [raw])


def test_values_are_shown_as_a_person_reads_them() -> None:
    assert shown(attr("datetime"), 1796452200000) == "2026-12-05 06:30 UTC"
    assert shown(attr("json"), {"a": 1}) == '{"a": 1}'
    assert shown(attr("string"), None) == ""


def test_the_state_graph_draws_every_state_and_move() -> None:
    procedure = {
        "states": [{"shortId": s} for s in ("NEW", "WON", "<LOST>")],
        "transitions": {"NEW": ["WON", "<LOST>"], "<LOST>": ["NEW"]},
        "initialState": "NEW",
    }
    svg = str(state_graph(procedure))
    assert svg.startswith("<svg") and svg.count("<rect") == 3 and svg.count("marker-end=") == 3
    assert "&lt;LOST&gt;" in svg and "<LOST>" not in svg  # names are escaped
    assert "moves: NEW to WON; NEW to &lt;LOST&gt;; &lt;LOST&gt; to NEW" in svg


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
STORED = st.one_of(
    st.tuples(st.just("integer"), st.integers(-(2**62), 2**62)),
    st.tuples(st.just("float"), st.floats(allow_nan=False, allow_infinity=False)),
    st.tuples(st.just("boolean"), st.booleans()),
    st.tuples(st.just("string"), st.text(min_size=1).map(str.strip).filter(bool)),
    st.tuples(st.just("datetime"), st.integers(0, 253402300799).map(lambda s: s * 1000)),
    st.tuples(st.just("json"), st.dictionaries(st.text(), JSON, min_size=1, max_size=3)),
    st.tuples(
        st.just("multiStringEnum"), st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, unique=True)
    ),
)


@given(STORED)
def test_a_stored_value_is_read_back_from_its_edit_forms_text(stored: tuple[str, Any]) -> None:
    kind, value = stored
    assert form_value(attr(kind), form_text(attr(kind), value, {})) == value


def test_an_edit_form_shows_a_user_by_username_and_nothing_for_what_is_unset() -> None:
    users = {"u-1": {"id": "u-1", "username": "shane.warne"}}
    assert form_text(attr("user"), "u-1", users) == ["shane.warne"]
    assert form_text(attr("string"), None, users) == [] and form_text(attr("photo"), "f-1", users) == []
    assert form_text(attr("datetimeISO8601"), "2026-12-05T06:30:00.000Z", users) == ["2026-12-05T06:30:00"]
