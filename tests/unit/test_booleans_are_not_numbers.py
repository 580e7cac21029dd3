"""A boolean where a number or a time is expected is refused, naming the field, wherever it is written:
Python counts ``True`` as the int 1, so each check must say so. Checked on every such field of a process,
of a list query, of a webhook subscription's retry and of an automation, with values of every JSON type."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from procession.domain.attributes import epoch_ms, number
from procession.domain.errors import Invalid
from procession.services.commands import ListProcesses, UpdateProcess
from procession.services.webhooks import WebhookRetry as Retry
from tests.unit.test_automations import parse

booleans = st.booleans()
numbers = st.integers(min_value=0, max_value=10**12) | st.floats(0, 10**6, allow_nan=False)


@given(booleans)
def test_no_boolean_is_a_number_or_a_time(value: bool) -> None:
    assert not number(value)
    with pytest.raises(ValueError):
        epoch_ms(value)


@given(numbers)
def test_numbers_still_are(value: float) -> None:
    assert number(value)


# (model, field): integers and numbers of the request bodies checked by their model
MODEL_FIELDS: list[tuple[type[BaseModel], str]] = [
    (UpdateProcess, "version"),
    (ListProcesses, "skip"),
    (ListProcesses, "limit"),
    (Retry, "maxAttempts"),
    (Retry, "backoffSeconds"),
]


@pytest.mark.parametrize(("model", "name"), MODEL_FIELDS)
@given(value=booleans)
def test_a_model_refuses_a_boolean_for_a_number(model: type[BaseModel], name: str, value: bool) -> None:
    with pytest.raises(ValidationError) as caught:
        model.model_validate({name: value})
    assert [e["loc"] for e in caught.value.errors()] == [(name,)]


# an automation's numbers: (body, the field named)
STEP = {"name": "call", "type": "http", "url": "https://example.com/"}
AUTOMATION_FIELDS = [
    (lambda v: {"steps": [STEP | {"timeoutSeconds": v}]}, "steps[0].timeoutSeconds"),
    (lambda v: {"steps": [{"name": "pause", "type": "wait", "seconds": v}]}, "steps[0].seconds"),
    (
        lambda v: {"trigger": {"type": "date_offset", "attribute": "due", "offsetMinutes": v}},
        "trigger.offsetMinutes",
    ),
]


@pytest.mark.parametrize(("body", "field"), AUTOMATION_FIELDS)
@given(value=booleans)
def test_an_automation_refuses_a_boolean_for_a_number(body: Any, field: str, value: bool) -> None:
    with pytest.raises(Invalid) as caught:
        parse({"trigger": {"type": "manual"}, "steps": [STEP]} | body(value))
    assert field in {e.field for e in caught.value.errors}
