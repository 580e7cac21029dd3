"""The console's pure parts: the input each attribute type gets, a form's text turned into the value the API
would have been sent, and the state graph drawn as SVG."""

from __future__ import annotations

import pytest

from procession.console.forms import form_value, input_kind, shown
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
