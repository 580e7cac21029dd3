"""The admin API, ``/v1/admin``: the team's configuration, by ids (shortIds accepted where unambiguous)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from procession.api.automations import AUTOMATIONS
from procession.api.deps import admin, services
from procession.api.envelope import DATA_ID, documented, link, reply
from procession.api.ext import EXT, PROCESSES
from procession.bootstrap import Services
from procession.services import configuration as conf
from procession.services.commands import EntityInput, PodInput, ProcedureInput, UserInput
from procession.services.common import Caller

router = APIRouter(prefix="/v1/admin", tags=["admin"])
Config = dict[str, Any]
ENTITY = "/entities/{entityId}"
PROCEDURE = "/procedures/{procedureId}"
ENTITY_LINKS = {"update": link("put", router.prefix + ENTITY, entityId=DATA_ID)}
SHORT_ID = {"procedureShortId": "$response.body#/_data/shortId"}
# from a reply holding a procedure to its definition, its automations and its processes
PROCEDURE_LINKS = {
    "read": link("get", router.prefix + PROCEDURE, procedureId=DATA_ID),
    "update": link("put", router.prefix + PROCEDURE, procedureId=DATA_ID),
    "automations": link("get", AUTOMATIONS, procedureId=DATA_ID),
    "createAutomation": link("post", AUTOMATIONS, procedureId=DATA_ID),
    "createProcess": link("post", EXT + PROCESSES, **SHORT_ID),
    "list": link("post", f"{EXT}{PROCESSES}/list", **SHORT_ID),
    "bulkCreate": link("post", f"{EXT}{PROCESSES}/bulk-create", **SHORT_ID),
    "bulkUpdate": link("patch", EXT + PROCESSES, **SHORT_ID),
    "listInternal": link("post", "/v1/internal/procedure/{procedureId}/process/list", procedureId=DATA_ID),
}


@router.post("/entities", status_code=201, responses=documented(Config, 201, 409, links=ENTITY_LINKS))
def create_entity(
    body: EntityInput, who: Caller = Depends(admin), svc: Services = Depends(services)
) -> Response:
    """Create an entity (a record type) with its attributes and primary key."""
    return reply(svc.run(conf.define_entity, who.team_id, body), status=201)


@router.put(ENTITY, responses=documented(Config, 200, 409))
def update_entity(
    entityId: str, body: EntityInput, who: Caller = Depends(admin), svc: Services = Depends(services)
) -> Response:
    """Replace an entity's definition; attributes sent with their ``id`` keep it."""
    return reply(svc.run(conf.define_entity, who.team_id, body, ref=entityId))


@router.post("/procedures", status_code=201, responses=documented(Config, 201, 409, links=PROCEDURE_LINKS))
def create_procedure(
    body: ProcedureInput, who: Caller = Depends(admin), svc: Services = Depends(services)
) -> Response:
    """Create a procedure: attributes, primary key, states, state graph, initial state, entity, parent."""
    return reply(svc.run(conf.define_procedure, who.team_id, body), status=201)


@router.get(PROCEDURE, responses=documented(Config, links=PROCEDURE_LINKS))
def get_procedure(
    procedureId: str, who: Caller = Depends(admin), svc: Services = Depends(services)
) -> Response:
    """One procedure, with ids and shortIds."""
    return reply(svc.run(conf.get_procedure, who.team_id, procedureId))


@router.put(PROCEDURE, responses=documented(Config, 200, 409, links=PROCEDURE_LINKS))
def update_procedure(
    procedureId: str, body: ProcedureInput, who: Caller = Depends(admin), svc: Services = Depends(services)
) -> Response:
    """Replace a procedure's definition; attributes and states sent with their ``id`` keep it (renames are
    free: stored data is keyed by id). Send the ``version`` you read to get a 409 on a concurrent change."""
    return reply(svc.run(conf.define_procedure, who.team_id, body, ref=procedureId))


@router.post("/users", status_code=201, responses=documented(Config, 201, 409))
def create_user(body: UserInput, who: Caller = Depends(admin), svc: Services = Depends(services)) -> Response:
    """Add a user to the team."""
    return reply(svc.run(conf.add_user, who.team_id, body), status=201)


@router.post("/pods", status_code=201, responses=documented(Config, 201, 409))
def create_pod(body: PodInput, who: Caller = Depends(admin), svc: Services = Depends(services)) -> Response:
    """Add a pod (a group of users) to the team."""
    return reply(svc.run(conf.add_pod, who.team_id, body), status=201)
