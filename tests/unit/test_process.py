"""Procedures (schema, state graph) and processes (create, apply, events), with plain objects."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from procession.domain.attributes import Attribute
from procession.domain.errors import FieldError, Invalid
from procession.domain.procedure import Procedure, Schema, State
from procession.domain.process import UNSET, Event, Process, ProcessChange, Status
from tests.unit.fakes import team_lookups

LOOKUPS = team_lookups()
T0, T1, T2, T3 = 1_000, 2_000, 3_000, 4_000


def lead() -> Procedure:
    """A lead: NEW -> IN_PROGRESS -> CONVERTED, NEW/IN_PROGRESS -> LOST -> NEW; two derived attributes."""
    return Procedure(
        id="pr-lead",
        short_id="lead",
        label="Lead",
        attributes=[
            Attribute("a-first", "firstname", "name", required=True),
            Attribute("a-last", "lastname", "name"),
            Attribute("a-score", "score", "integer", config={"min": 0, "max": 100}),
            Attribute("a-email", "email", "email"),
            Attribute("a-owner", "owner", "user"),
            Attribute("a-full", "fullname", "string", formula='data.firstname + " " + data.lastname'),
            Attribute("a-double", "double", "integer", formula="data.score * 2"),
        ],
        primary_key="a-email",
        states=[
            State("s-new", "NEW", "New"),
            State("s-prog", "IN_PROGRESS", "In progress"),
            State("s-conv", "CONVERTED", "Converted"),
            State("s-lost", "LOST", "Lost"),
        ],
        initial_state="s-new",
        transitions={"s-new": ["s-prog", "s-lost"], "s-prog": ["s-conv", "s-lost"], "s-lost": ["s-new"]},
        entity="ent-customer",
        parent="pr-parent",
    )


def create(change: ProcessChange | None = None, *, procedure: Procedure | None = None) -> Process:
    process, _ = create_with_events(change, procedure=procedure)
    return process


def create_with_events(
    change: ProcessChange | None = None, *, procedure: Procedure | None = None
) -> tuple[Process, list[Event]]:
    change = change or ProcessChange(data={"a-first": "Ted"})
    return Process.create(procedure or lead(), change, id="p-1", team="team-1", created_by="u-1", now=T0)


def types(events: list[Event]) -> list[str]:
    return [e.type for e in events]


def updated_changes(events: list[Event]) -> dict[str, list[Any]]:
    assert events[0].type == "process.updated"
    return events[0].payload["changes"]


# Schema: input data


def test_normalise_data_maps_short_ids_to_ids_and_normalises() -> None:
    got = lead().normalise_data({"firstname": "  Ted  ", "score": "5", "owner": "shane.warne"}, LOOKUPS)
    assert got == {"a-first": "Ted", "a-score": 5, "a-owner": "u-1"}


def test_normalise_data_accepts_attribute_ids_and_none() -> None:
    assert lead().normalise_data({"a-score": 7, "lastname": None}, LOOKUPS) == {"a-score": 7, "a-last": None}


def test_normalise_data_reports_every_bad_field_at_once() -> None:
    with pytest.raises(Invalid) as e:
        lead().normalise_data(
            {
                "firstname": "Ted",
                "score": "high",
                "email": "nope",
                "bogus": 1,
                "fullname": "x",
                "lastname": 5,
            },
            LOOKUPS,
        )
    errors = {err.field: err for err in e.value.errors}
    assert set(errors) == {"data.score", "data.email", "data.bogus", "data.fullname", "data.lastname"}
    assert {f: err.code for f, err in errors.items()} == {
        "data.score": "invalid_value",
        "data.email": "invalid_value",
        "data.bogus": "unknown_attribute",
        "data.fullname": "read_only",
        "data.lastname": "invalid_value",
    }
    assert errors["data.score"].message == "score (integer) must be an integer"
    assert "lead has no attribute 'bogus'" in errors["data.bogus"].message
    assert "derived" in errors["data.fullname"].message
    assert e.value.code == "invalid"
    assert errors["data.score"].message in str(e.value)


def test_normalise_data_reports_config_bounds_with_the_field() -> None:
    with pytest.raises(Invalid) as e:
        lead().normalise_data({"score": 101}, LOOKUPS)
    assert [(x.code, x.field) for x in e.value.errors] == [("invalid_value", "data.score")]
    assert "at most 100" in e.value.errors[0].message


def test_normalise_data_field_paths_follow_the_prefix() -> None:
    with pytest.raises(Invalid) as e:
        lead().normalise_data({"nope": 1}, LOOKUPS, prefix="record.data")
    assert e.value.errors[0].as_dict() == {
        "code": "unknown_attribute",
        "message": "lead has no attribute 'nope'",
        "field": "record.data.nope",
    }


def test_normalise_data_of_nothing_is_nothing() -> None:
    assert lead().normalise_data({}, LOOKUPS) == {}


def test_missing_required_lists_required_non_derived_attributes_without_value() -> None:
    schema = Schema(
        id="e-1",
        short_id="customer",
        label="Customer",
        attributes=[
            Attribute("a-phone", "phone_number", "phone", required=True),
            Attribute("a-name", "name", "name", required=True),
            Attribute("a-city", "city", "string"),
            Attribute("a-tag", "tag", "string", required=True, formula='"x"'),
        ],
    )
    assert schema.missing_required({"a-phone": "7701214822", "a-name": None}) == [
        FieldError("required", "name is required", "data.name")
    ]
    assert [e.field for e in schema.missing_required({}, prefix="record.data")] == [
        "record.data.phone_number",
        "record.data.name",
    ]
    assert schema.missing_required({"a-phone": "1", "a-name": "x"}) == []


def test_to_short_renames_ids_and_drops_unknown_ones() -> None:
    assert lead().to_short({"a-first": "Ted", "a-score": 5, "a-gone": 1}) == {"firstname": "Ted", "score": 5}


def test_derive_computes_every_formula_from_short_ids() -> None:
    derived = lead().derive({"a-first": "Ted", "a-last": "Mosby", "a-score": 5})
    assert derived == {"a-full": "Ted Mosby", "a-double": 10}


def test_derive_yields_none_when_a_formula_cannot_be_computed() -> None:
    assert lead().derive({"a-first": "Ted"}) == {"a-full": None, "a-double": None}


def test_derive_without_derived_attributes_is_empty() -> None:
    schema = Schema("e-1", "customer", "Customer", [Attribute("a-1", "x", "string")])
    assert schema.derive({"a-1": "v"}) == {}


def test_primary_key_attribute() -> None:
    procedure = lead()
    assert procedure.primary_key_attribute is procedure.by_id["a-email"]
    assert Schema("e-1", "customer", "Customer", []).primary_key_attribute is None


# Procedure: the state graph


@pytest.mark.parametrize(
    ("source", "target", "allowed"),
    [
        (None, "s-conv", True),
        ("s-new", "s-new", True),
        ("s-conv", "s-conv", True),
        ("s-new", "s-prog", True),
        ("s-prog", "s-conv", True),
        ("s-lost", "s-new", True),
        ("s-new", "s-conv", False),
        ("s-conv", "s-new", False),
        ("s-prog", "s-new", False),
        ("s-unknown", "s-new", False),
    ],
)
def test_can_move(source: str | None, target: str, allowed: bool) -> None:
    assert lead().can_move(source, target) is allowed


@pytest.mark.parametrize(
    ("ref", "state_id"), [("NEW", "s-new"), ("CONVERTED", "s-conv"), ("s-prog", "s-prog")]
)
def test_state_id_by_short_id_or_id(ref: str, state_id: str) -> None:
    assert lead().state_id(ref) == state_id


def test_unknown_state_is_invalid_and_lists_the_known_ones() -> None:
    with pytest.raises(Invalid) as e:
        lead().state_id("WON")
    [error] = e.value.errors
    assert (error.code, error.field) == ("unknown_state", "state")
    assert error.message == "lead has no state 'WON' (known: NEW, IN_PROGRESS, CONVERTED, LOST)"
    with pytest.raises(Invalid) as e:
        lead().state_id("WON", field_name="processes[0].state")
    assert e.value.errors[0].field == "processes[0].state"


def test_state_short() -> None:
    assert lead().state_short("s-conv") == "CONVERTED"
    assert lead().state_short(None) is None
    assert lead().state_short("s-unknown") is None


def test_procedure_definition_round_trip_and_public_form() -> None:
    procedure = lead()
    again = Procedure.from_row(
        id="pr-lead", short_id="lead", label="Lead", version=3, definition=procedure.definition()
    )
    assert again.definition() == procedure.definition()
    assert (again.version, again.entity, again.parent) == (3, "ent-customer", "pr-parent")
    public = procedure.to_dict()
    assert public["primaryKey"] == "email"
    assert public["initialState"] == "NEW"
    assert public["transitions"]["NEW"] == ["IN_PROGRESS", "LOST"]
    assert public["parentProcedure"] == "pr-parent"


# Process.create


def test_create_sets_defaults_derived_data_and_version_one() -> None:
    procedure = lead()
    process, events = Process.create(
        procedure,
        ProcessChange(data={"a-first": "Ted", "a-last": "Mosby", "a-score": 5}),
        id="p-1",
        team="team-1",
        created_by="u-1",
        now=T0,
    )
    assert (process.id, process.team, process.procedure, process.created_by) == (
        "p-1",
        "team-1",
        "pr-lead",
        "u-1",
    )
    assert process.status == Status.OPEN
    assert process.state == "s-new"
    assert (process.created_at, process.updated_at) == (T0, T0)
    assert process.parent_procedure == "pr-parent"
    assert process.data == {"a-first": "Ted", "a-last": "Mosby", "a-score": 5}
    assert process.derived_data == {"a-full": "Ted Mosby", "a-double": 10}
    assert process.version == 1
    assert (process.completed_at, process.cancelled_at) == (None, None)
    assert (process.assigned_to, process.first_assigned_to, process.last_assigned_at) == (None, None, None)
    assert process.is_deleted is False
    assert events == [Event("process.created", {"snapshot": process.snapshot()})]


def test_create_snapshot_has_every_field_as_stored() -> None:
    process, [created] = create_with_events()
    snapshot = created.payload["snapshot"]
    assert snapshot == process.snapshot()
    assert snapshot["version"] == 1
    assert snapshot["data"] == {"a-first": "Ted"}
    assert snapshot["state"] == "s-new"
    assert set(snapshot) >= {"id", "status", "assigned_to", "first_assigned_at", "derived_data", "is_deleted"}


def test_create_with_assignment_emits_assigned_and_sets_first_assignment() -> None:
    process, events = create_with_events(ProcessChange(data={"a-first": "Ted"}, assigned_to="u-1"))
    assert types(events) == ["process.created", "process.assigned"]
    assert events[1].payload == {"from": None, "to": "u-1"}
    assert (process.assigned_to, process.first_assigned_to) == ("u-1", "u-1")
    assert (process.first_assigned_at, process.last_assigned_at) == (T0, T0)


@pytest.mark.parametrize("state", ["s-new", "s-prog", "s-conv", "s-lost"])
def test_create_directly_in_any_state(state: str) -> None:
    process, events = create_with_events(ProcessChange(data={"a-first": "Ted"}, state=state))
    assert process.state == state
    assert types(events) == ["process.created"]


def test_create_completed_sets_completed_at() -> None:
    process = create(ProcessChange(data={"a-first": "Ted"}, status="COMPLETED", state="s-conv"))
    assert (process.status, process.completed_at, process.cancelled_at) == ("COMPLETED", T0, None)


def test_create_cancelled_sets_cancelled_at() -> None:
    process = create(ProcessChange(data={"a-first": "Ted"}, status=Status.CANCELLED))
    assert (process.status, process.completed_at, process.cancelled_at) == ("CANCELLED", None, T0)


def test_create_sets_the_other_fields() -> None:
    process = create(
        ProcessChange(
            data={"a-first": "Ted"},
            belongs_to="pod-1",
            next_action_at=1618558867539,
            parent_process="p-0",
            primary_booking="b-1",
            record="rec-1",
            entity="ent-customer",
        )
    )
    assert (process.belongs_to, process.next_action_at, process.parent_process) == (
        "pod-1",
        1618558867539,
        "p-0",
    )
    assert (process.primary_booking, process.record, process.entity) == ("b-1", "rec-1", "ent-customer")


def test_create_without_a_required_value_is_invalid() -> None:
    with pytest.raises(Invalid) as e:
        create(ProcessChange(data={"a-last": "Mosby"}))
    assert [(x.code, x.field) for x in e.value.errors] == [("required", "data.firstname")]


def test_create_without_initial_state_has_no_state() -> None:
    procedure = lead()
    procedure.initial_state = None
    assert create(procedure=procedure).state is None


# Process.apply: status


def test_completing_sets_completed_at_and_emits_status_changed() -> None:
    process = create()
    events = process.apply(lead(), ProcessChange(status=Status.COMPLETED), now=T1)
    assert (process.status, process.completed_at, process.cancelled_at) == ("COMPLETED", T1, None)
    assert types(events) == ["process.updated", "process.status_changed"]
    assert updated_changes(events) == {"status": ["OPEN", "COMPLETED"]}
    assert events[1].payload == {"from": "OPEN", "to": "COMPLETED"}


def test_cancelling_a_completed_process_moves_the_timestamp() -> None:
    process = create(ProcessChange(data={"a-first": "Ted"}, status="COMPLETED"))
    process.apply(lead(), ProcessChange(status="CANCELLED"), now=T1)
    assert (process.status, process.completed_at, process.cancelled_at) == ("CANCELLED", None, T1)


@pytest.mark.parametrize("closed", ["COMPLETED", "CANCELLED"])
def test_reopening_clears_completed_and_cancelled_at(closed: str) -> None:
    process = create(ProcessChange(data={"a-first": "Ted"}, status=closed))
    events = process.apply(lead(), ProcessChange(status="OPEN"), now=T1)
    assert (process.status, process.completed_at, process.cancelled_at) == ("OPEN", None, None)
    assert events[1] == Event("process.status_changed", {"from": closed, "to": "OPEN"})


def test_repeating_the_status_keeps_its_timestamp_and_emits_nothing() -> None:
    process = create(ProcessChange(data={"a-first": "Ted"}, status="COMPLETED"))
    events = process.apply(lead(), ProcessChange(status="COMPLETED"), now=T1)
    assert (process.completed_at, process.version) == (T0, 1)
    assert events == []


# Process.apply: assignment


def test_assignment_history() -> None:
    process = create()
    events = process.apply(lead(), ProcessChange(assigned_to="u-1"), now=T1)
    assert (process.assigned_to, process.first_assigned_to, process.first_assigned_at) == ("u-1", "u-1", T1)
    assert process.last_assigned_at == T1
    assert events[1] == Event("process.assigned", {"from": None, "to": "u-1"})

    events = process.apply(lead(), ProcessChange(assigned_to="u-2"), now=T2)
    assert (process.assigned_to, process.first_assigned_to, process.first_assigned_at) == ("u-2", "u-1", T1)
    assert process.last_assigned_at == T2
    assert updated_changes(events) == {"assigned_to": ["u-1", "u-2"]}
    assert events[1] == Event("process.assigned", {"from": "u-1", "to": "u-2"})

    events = process.apply(lead(), ProcessChange(assigned_to=None), now=T3)
    assert (process.assigned_to, process.first_assigned_to, process.first_assigned_at) == (None, "u-1", T1)
    assert process.last_assigned_at == T2, "unassigning is not an assignment"
    assert events[1] == Event("process.assigned", {"from": "u-2", "to": None})


def test_reassigning_after_unassigning_keeps_the_first_assignee() -> None:
    process = create(ProcessChange(data={"a-first": "Ted"}, assigned_to="u-1"))
    process.apply(lead(), ProcessChange(assigned_to=None), now=T1)
    process.apply(lead(), ProcessChange(assigned_to="u-2"), now=T2)
    assert (process.first_assigned_to, process.first_assigned_at, process.last_assigned_at) == ("u-1", T0, T2)


def test_unset_assignment_leaves_it_alone() -> None:
    process = create(ProcessChange(data={"a-first": "Ted"}, assigned_to="u-1"))
    events = process.apply(lead(), ProcessChange(data={"a-last": "Mosby"}), now=T1)
    assert (process.assigned_to, process.last_assigned_at) == ("u-1", T0)
    assert "process.assigned" not in types(events)


# Process.apply: the state graph


def test_allowed_transition_emits_state_changed() -> None:
    process = create()
    events = process.apply(lead(), ProcessChange(state="s-prog"), now=T1)
    assert process.state == "s-prog"
    assert types(events) == ["process.updated", "process.state_changed"]
    assert updated_changes(events) == {"state": ["s-new", "s-prog"]}
    assert events[1].payload == {"from": "s-new", "to": "s-prog"}


def test_staying_in_the_same_state_is_no_change() -> None:
    process = create()
    events = process.apply(lead(), ProcessChange(state="s-new"), now=T1)
    assert (process.state, process.version) == ("s-new", 1)
    assert events == []


def test_refused_transition_is_invalid_and_changes_nothing() -> None:
    process = create(ProcessChange(data={"a-first": "Ted", "a-score": 5}, assigned_to="u-1"))
    before = copy.deepcopy(process.snapshot())
    change = ProcessChange(
        data={"a-score": 9}, state="s-conv", status="COMPLETED", assigned_to="u-2", is_deleted=True
    )
    with pytest.raises(Invalid) as e:
        process.apply(lead(), change, now=T1)
    [error] = e.value.errors
    assert (error.code, error.field) == ("transition_not_allowed", "state")
    assert error.message == "lead cannot move from NEW to CONVERTED"
    assert process.snapshot() == before


def test_missing_required_on_apply_is_invalid_and_changes_nothing() -> None:
    process = create()
    before = copy.deepcopy(process.snapshot())
    with pytest.raises(Invalid) as e:
        process.apply(lead(), ProcessChange(data={"a-first": None, "a-score": 3}, state="s-prog"), now=T1)
    assert [(x.code, x.field) for x in e.value.errors] == [("required", "data.firstname")]
    assert process.snapshot() == before


def test_graph_can_be_bypassed_when_not_enforced() -> None:
    process = create()
    process.apply(lead(), ProcessChange(state="s-conv"), now=T1, enforce_graph=False)
    assert process.state == "s-conv"


def test_graph_applies_after_creating_in_a_final_state() -> None:
    process = create(ProcessChange(data={"a-first": "Ted"}, state="s-conv"))
    with pytest.raises(Invalid, match="cannot move from CONVERTED to NEW"):
        process.apply(lead(), ProcessChange(state="s-new"), now=T1)
    assert process.state == "s-conv"


# Process.apply: data, derived data, other fields, events and versions


def test_data_merges_and_none_removes_a_key() -> None:
    process = create(ProcessChange(data={"a-first": "Ted", "a-score": 5, "a-email": "ted@x.com"}))
    events = process.apply(
        lead(),
        ProcessChange(data={"a-score": 6, "a-last": "Mosby", "a-email": None, "a-owner": None}),
        now=T1,
    )
    assert process.data == {"a-first": "Ted", "a-score": 6, "a-last": "Mosby"}
    changes = updated_changes(events)
    assert changes["data.a-score"] == [5, 6]
    assert changes["data.a-last"] == [None, "Mosby"]
    assert changes["data.a-email"] == ["ted@x.com", None]
    assert "data.a-owner" not in changes, "removing an absent key is no change"
    assert "data.a-first" not in changes, "keys not in the change are no change"


def test_writing_the_same_value_is_no_change() -> None:
    process = create(ProcessChange(data={"a-first": "Ted", "a-score": 5}))
    events = process.apply(lead(), ProcessChange(data={"a-score": 5}), now=T1)
    assert events == []
    assert (process.version, process.updated_at) == (1, T0)


def test_change_data_is_not_aliased_into_the_process() -> None:
    process = create()
    change = ProcessChange(data={"a-last": "Mosby"})
    process.apply(lead(), change, now=T1)
    change.data["a-score"] = 99
    assert "a-score" not in process.data


def test_derived_data_is_recomputed_and_recorded() -> None:
    process = create(ProcessChange(data={"a-first": "Ted", "a-last": "Mosby", "a-score": 5}))
    events = process.apply(lead(), ProcessChange(data={"a-last": "Evelyn", "a-score": None}), now=T1)
    assert process.derived_data == {"a-full": "Ted Evelyn", "a-double": None}
    changes = updated_changes(events)
    assert changes["derivedData.a-full"] == ["Ted Mosby", "Ted Evelyn"]
    assert changes["derivedData.a-double"] == [10, None]


def test_deleting_and_restoring() -> None:
    process = create()
    events = process.apply(lead(), ProcessChange(is_deleted=True), now=T1)
    assert process.is_deleted is True
    assert types(events) == ["process.updated", "process.deleted"]
    assert updated_changes(events) == {"is_deleted": [False, True]}
    events = process.apply(lead(), ProcessChange(is_deleted=False), now=T2)
    assert process.is_deleted is False
    assert types(events) == ["process.updated", "process.restored"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("belongs_to", "pod-1"),
        ("next_action_at", 1616253910842),
        ("parent_process", "p-0"),
        ("primary_booking", "b-1"),
        ("record", "rec-1"),
        ("entity", "ent-customer"),
    ],
)
def test_plain_fields_are_set_and_recorded(name: str, value: Any) -> None:
    process = create()
    events = process.apply(lead(), ProcessChange(**{name: value}), now=T1)
    assert getattr(process, name) == value
    assert updated_changes(events) == {name: [None, value]}
    assert types(events) == ["process.updated"]
    clear: dict[str, Any] = {name: None}
    events = process.apply(lead(), ProcessChange(**clear), now=T2)
    assert getattr(process, name) is None
    assert updated_changes(events) == {name: [value, None]}


def test_one_change_emits_every_event_in_order() -> None:
    process = create()
    events = process.apply(
        lead(),
        ProcessChange(
            data={"a-last": "Mosby"}, state="s-prog", status="CANCELLED", assigned_to="u-2", is_deleted=True
        ),
        now=T1,
    )
    assert types(events) == [
        "process.updated",
        "process.state_changed",
        "process.status_changed",
        "process.assigned",
        "process.deleted",
    ]
    assert set(updated_changes(events)) == {
        "data.a-last",
        "derivedData.a-full",
        "state",
        "status",
        "assigned_to",
        "is_deleted",
    }


def test_every_effective_apply_bumps_version_and_updated_at() -> None:
    process = create()
    assert (process.version, process.updated_at) == (1, T0)
    process.apply(lead(), ProcessChange(data={"a-score": 1}), now=T1)
    assert (process.version, process.updated_at, process.created_at) == (2, T1, T0)
    process.apply(lead(), ProcessChange(state="s-prog"), now=T2)
    assert (process.version, process.updated_at) == (3, T2)


def test_refused_change_keeps_the_version() -> None:
    process = create()
    with pytest.raises(Invalid):
        process.apply(lead(), ProcessChange(state="s-conv"), now=T1)
    assert (process.version, process.updated_at) == (1, T0)


def test_a_change_that_changes_nothing_emits_nothing_and_keeps_the_version() -> None:
    process = create(ProcessChange(data={"a-first": "Ted"}, assigned_to="u-1", status="COMPLETED"))
    before = copy.deepcopy(process.snapshot())
    assert process.apply(lead(), ProcessChange(), now=T1) == []
    assert process.apply(lead(), ProcessChange(data={"a-first": "Ted", "a-score": None}), now=T1) == []
    assert process.snapshot() == before


def test_no_change_without_its_event_when_reassigning_the_same_user() -> None:
    process = create(ProcessChange(data={"a-first": "Ted"}, assigned_to="u-1"))
    before = copy.deepcopy(process.snapshot())
    events = process.apply(lead(), ProcessChange(assigned_to="u-1"), now=T1)
    assert events or process.snapshot() == before


def test_unset_is_falsy_and_distinct_from_none() -> None:
    change = ProcessChange()
    assert change.state is UNSET and change.assigned_to is UNSET and change.is_deleted is UNSET
    assert not UNSET
    assert UNSET is not None
    assert repr(UNSET) == "UNSET"
    assert change.data == {}
    assert ProcessChange().data is not change.data


def test_only_formulas_reading_a_changed_attribute_are_recomputed() -> None:
    process = create(ProcessChange(data={"a-first": "Ted", "a-last": "Mosby", "a-score": 2}))
    assert process.derived_data == {"a-full": "Ted Mosby", "a-double": 4}
    process.derived_data = {"a-full": "stale", "a-double": 4}  # a value only a recomputation would replace
    process.apply(lead(), ProcessChange(data={"a-score": 3}), now=T1)
    assert process.derived_data == {"a-full": "stale", "a-double": 6}
    process.apply(lead(), ProcessChange(data={"a-last": "Stinson"}), now=T2)
    assert process.derived_data == {"a-full": "Ted Stinson", "a-double": 6}


@pytest.mark.parametrize(
    ("formula", "inputs"),
    [
        ('data.firstname + " " + data.lastname', {"firstname", "lastname"}),
        ("has(data.score) ? data.score : 0", {"score"}),
        ('data["score"] * 2', None),
        ("size(data)", None),
        ("1 + 2", set()),
    ],
)
def test_formula_inputs(formula: str, inputs: set[str] | None) -> None:
    found = Attribute("a", "x", "string", formula=formula).formula_inputs
    assert found == (None if inputs is None else frozenset(inputs))


# Which fields a save writes


@pytest.mark.parametrize(
    "change",
    [
        ProcessChange(data={"a-score": 7}),  # data and a derived value
        ProcessChange(data={"a-email": "ted@example.com"}),  # the primary key lives in data
        ProcessChange(state="s-prog"),
        ProcessChange(status="COMPLETED"),
        ProcessChange(status="CANCELLED"),
        ProcessChange(assigned_to="u-2"),
        ProcessChange(belongs_to="pod-1", next_action_at=T3, parent_process="p-0", primary_booking="b-1"),
        ProcessChange(is_deleted=True, record="r-2", entity="ent-2"),
        ProcessChange(data={"a-last": "Mosby"}, state="s-lost", status="COMPLETED", assigned_to="u-3"),
    ],
)
def test_fields_written_covers_every_field_the_change_set(change: ProcessChange) -> None:
    """A bulk save writes only these columns: every field the change altered must be among them."""
    process = create()
    before = process.snapshot()
    events = process.apply(lead(), change, now=T2)
    after = process.snapshot()
    altered = {name for name in before if before[name] != after[name]}
    assert altered and altered <= Process.fields_written(updated_changes(events))
    assert {"updated_at", "version"} <= Process.fields_written(updated_changes(events))


def test_fields_written_of_no_change_is_only_the_stamp() -> None:
    process = create()
    assert process.apply(lead(), ProcessChange(), now=T2) == []
    assert Process.fields_written({}) == {"updated_at", "version"}
