"""Solution templates (sales, support, field) and the demo team that holds them all."""

from __future__ import annotations

import contextlib
from typing import Any

from procession.domain.errors import Conflict
from procession.services.commands import CreateProcess, EntityInput, PodInput, ProcedureInput, UserInput
from procession.services.common import Caller
from procession.services.configuration import add_pod, add_user, define_entity, define_procedure
from procession.services.processes import create_process
from procession.services.teams import create_team
from procession.store.repositories.teams import Teams
from procession.store.uow import UnitsOfWork

DEMO_SLUG = "demo"
DEMO_USERS: list[dict[str, Any]] = [
    {"username": "shane.warne", "name": "Shane Warne", "role": "member"},
    {
        "username": "rahul.dravid",
        "name": "Rahul Dravid",
        "role": "member",
        "id": "bcc42c4f-3e9c-4eaa-8728-c1edd7c7be5c",
    },
    {"username": "admin", "name": "Demo Admin", "role": "admin"},
]
DEMO_PODS: list[dict[str, Any]] = [
    {"shortId": "sales", "name": "Sales", "members": ["shane.warne", "rahul.dravid"]},
    {"shortId": "support", "name": "Support", "members": ["admin"]},
]

# sample leads the specification's bulk-update examples name
DEMO_LEADS: list[tuple[str, dict[str, Any]]] = [
    (
        "46ce67e5-684e-4cfc-b47e-345a485d1cdd",
        {"data": {"lead_id": "LEAD-901", "first_name": "Cixin", "last_name": "Liu"}},
    ),
    (
        "3b1f0a52-6f0e-4d8e-9a57-5c3f7d2a9e10",
        {"data": {"lead_id": "LEAD-910", "source": "web-form", "city": "Osaka"}},
    ),
    ("7d4e2c11-8a3b-4f6d-b2e9-0c5a1f3e8d27", {"data": {"lead_id": "EXT-TEST-143", "score": 12}}),
    ("1e50dd73-9ce6-405b-932a-9c4c5e7b5599", {"data": {"lead_id": "LEAD-905", "city": "Mumbai"}}),
]

CUSTOMER: dict[str, Any] = {
    "shortId": "customer",
    "label": "Customer",
    "primaryKey": "phone_number",
    "attributes": [
        {"shortId": "phone_number", "label": "Phone number", "type": "phone", "required": True},
        {"shortId": "email", "label": "Email", "type": "email"},
        {"shortId": "name", "label": "Name", "type": "name"},
    ],
}


def _attrs(*specs: tuple[str, str]) -> list[dict[str, Any]]:
    return [
        {"shortId": short, "label": short.replace("_", " ").capitalize(), "type": kind}
        for short, kind in specs
    ]


LEAD: dict[str, Any] = {
    "shortId": "lead",
    "label": "Lead",
    "entity": "customer",
    "primaryKey": "lead_id",
    "attributes": [
        {
            "shortId": "lead_id",
            "label": "Lead id",
            "type": "stringId",
            "config": {"prefix": "LEAD-", "start": 911},
        },
        *_attrs(
            ("source", "string"),
            ("firstname", "name"),
            ("lastname", "name"),
            ("first_name", "name"),
            ("last_name", "name"),
            ("name", "name"),
            ("phone_num", "phone"),
            ("score", "integer"),
            ("city", "string"),
            ("country", "string"),
        ),
        {
            "shortId": "full_name",
            "label": "Full name",
            "type": "string",
            "formula": 'has(data.firstname) && has(data.lastname) ? data.firstname + " " + data.lastname : '
            '(has(data.first_name) && has(data.last_name) ? data.first_name + " " + data.last_name : "")',
        },
    ],
    "states": [
        {"shortId": s, "label": s.replace("_", " ").title()}
        for s in ("NEW", "IN_PROGRESS", "CONVERTED", "LOST")
    ],
    "initialState": "NEW",
    "transitions": {
        "NEW": ["IN_PROGRESS", "CONVERTED", "LOST"],
        "IN_PROGRESS": ["NEW", "CONVERTED", "LOST"],
        "LOST": ["NEW", "IN_PROGRESS"],
    },
}

TICKET: dict[str, Any] = {
    "shortId": "ticket",
    "label": "Ticket",
    "entity": "customer",
    "primaryKey": "ticket_id",
    "attributes": [
        {"shortId": "ticket_id", "label": "Ticket id", "type": "stringId", "config": {"prefix": "TKT-"}},
        *_attrs(("subject", "string"), ("description", "text"), ("customer_email", "email")),
        {
            "shortId": "priority",
            "label": "Priority",
            "type": "stringEnum",
            "options": ["low", "medium", "high"],
        },
    ],
    "states": [{"shortId": s, "label": s.title()} for s in ("NEW", "ASSIGNED", "SOLVED")],
    "initialState": "NEW",
    "transitions": {"NEW": ["ASSIGNED", "SOLVED"], "ASSIGNED": ["NEW", "SOLVED"], "SOLVED": ["ASSIGNED"]},
}

FIELDVISIT: dict[str, Any] = {
    "shortId": "fieldvisit",
    "label": "Field visit",
    "entity": "customer",
    "primaryKey": "visit_id",
    "parentProcedure": "ticket",
    "attributes": [
        {"shortId": "visit_id", "label": "Visit id", "type": "integerId", "config": {"start": 1}},
        *_attrs(
            ("address", "text"),
            ("location", "geolocation"),
            ("scheduled_for", "datetime"),
            ("photos", "multiPhotos"),
            ("report", "document"),
            ("technician", "user"),
            ("notes", "text"),
        ),
    ],
    "states": [
        {"shortId": s, "label": s.replace("_", " ").title()} for s in ("SCHEDULED", "IN_PROGRESS", "DONE")
    ],
    "initialState": "SCHEDULED",
    "transitions": {"SCHEDULED": ["IN_PROGRESS", "DONE"], "IN_PROGRESS": ["SCHEDULED", "DONE"]},
}

TEMPLATES: dict[str, list[dict[str, Any]]] = {
    "sales": [LEAD],
    "support": [TICKET],
    "field": [TICKET, FIELDVISIT],
    "all": [LEAD, TICKET, FIELDVISIT],
}


def install_template(uows: UnitsOfWork, team_id: str, name: str) -> None:
    """Add a template's entity and procedures to a team, skipping what it has already."""
    with contextlib.suppress(Conflict):
        define_entity(uows, team_id, EntityInput.model_validate(CUSTOMER))
    for spec in TEMPLATES[name]:
        with contextlib.suppress(Conflict):
            define_procedure(uows, team_id, ProcedureInput.model_validate(spec))


def seed_demo(uows: UnitsOfWork) -> str:
    """The demo team with every template, its users and pods; idempotent. Returns the team id."""
    with uows.engine.connect() as conn:
        team = Teams(conn).by_slug(DEMO_SLUG)
    team = team or create_team(uows.engine, DEMO_SLUG, "Demo team")
    for user in DEMO_USERS:
        with contextlib.suppress(Conflict):
            add_user(uows, team, UserInput.model_validate(user))
    for pod in DEMO_PODS:
        with contextlib.suppress(Conflict):
            add_pod(uows, team, PodInput.model_validate(pod))
    install_template(uows, team, "all")
    with uows.read(team) as uow:
        admin = Caller(team, "admin", uow.users.id_of("admin"))
    for process_id, body in DEMO_LEADS:
        with contextlib.suppress(Conflict):
            create_process(uows, admin, "lead", CreateProcess.model_validate(body), process_id=process_id)
    return team
