"""The admin API, ``/v1/admin``: the team's configuration, by ids (shortIds accepted where unambiguous)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from procession.api.deps import admin, services
from procession.api.envelope import documented, reply
from procession.bootstrap import Services
from procession.services import configuration as conf
from procession.services.commands import EntityInput, PodInput, ProcedureInput, UserInput
from procession.services.common import Caller

router = APIRouter(prefix="/v1/admin", tags=["admin"])
Config = dict[str, Any]


@router.post("/entities", status_code=201, responses=documented(Config, 201, 409))
def create_entity(
    body: EntityInput, who: Caller = Depends(admin), svc: Services = Depends(services)
) -> Response:
    """Create an entity (a record type) with its attributes and primary key."""
    return reply(svc.run(conf.define_entity, who.team_id, body), status=201)


@router.put("/entities/{entityId}", responses=documented(Config, 200, 409))
def update_entity(
    entityId: str, body: EntityInput, who: Caller = Depends(admin), svc: Services = Depends(services)
) -> Response:
    """Replace an entity's definition; attributes sent with their ``id`` keep it."""
    return reply(svc.run(conf.define_entity, who.team_id, body, ref=entityId))


@router.post("/procedures", status_code=201, responses=documented(Config, 201, 409))
def create_procedure(
    body: ProcedureInput, who: Caller = Depends(admin), svc: Services = Depends(services)
) -> Response:
    """Create a procedure: attributes, primary key, states, state graph, initial state, entity, parent."""
    return reply(svc.run(conf.define_procedure, who.team_id, body), status=201)


@router.get("/procedures/{procedureId}", responses=documented(Config))
def get_procedure(
    procedureId: str, who: Caller = Depends(admin), svc: Services = Depends(services)
) -> Response:
    """One procedure, with ids and shortIds."""
    return reply(svc.run(conf.get_procedure, who.team_id, procedureId))


@router.put("/procedures/{procedureId}", responses=documented(Config, 200, 409))
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
