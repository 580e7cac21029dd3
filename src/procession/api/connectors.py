"""Connectors (``/v1/admin/connectors``: a team's accounts at external services; credentials write-only)
and the links steps made for a process (``…/process/{id}/links``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from procession.api.deps import admin, caller, services
from procession.api.envelope import DATA_ID, documented, link, reply
from procession.api.ext import EXT, PROCESS
from procession.bootstrap import Services
from procession.services import connectors as conn
from procession.services.common import Caller
from procession.services.connectors import ConnectorInput

router = APIRouter(tags=["connectors"])
Doc = dict[str, Any]
CONNECTORS = "/v1/admin/connectors"
CONNECTOR = CONNECTORS + "/{connectorId}"
CONNECTOR_LINKS = {
    "read": link("get", CONNECTOR, connectorId=DATA_ID),
    "update": link("put", CONNECTOR, connectorId=DATA_ID),
    "delete": link("delete", CONNECTOR, connectorId=DATA_ID),
}


@router.post(CONNECTORS, status_code=201, responses=documented(Doc, 201, 409, links=CONNECTOR_LINKS))
def create_connector(
    body: ConnectorInput, who: Caller = Depends(admin), svc: Services = Depends(services)
) -> Response:
    """Add a connector. Its credentials are kept encrypted and never shown: replies say which are set."""
    return reply(svc.run(conn.create_connector, who.team_id, body, vault=svc.vault), status=201)


@router.get(CONNECTORS, responses=documented(list[Doc]))
def list_connectors(who: Caller = Depends(admin), svc: Services = Depends(services)) -> Response:
    return reply(svc.run(conn.list_connectors, who.team_id))


@router.get(CONNECTOR, responses=documented(Doc, links=CONNECTOR_LINKS))
def get_connector(
    connectorId: str, who: Caller = Depends(admin), svc: Services = Depends(services)
) -> Response:
    """One connector, by id or name."""
    return reply(svc.run(conn.get_connector, who.team_id, connectorId))


@router.put(CONNECTOR, responses=documented(Doc, 200, 409, links=CONNECTOR_LINKS))
def update_connector(
    connectorId: str, body: ConnectorInput, who: Caller = Depends(admin), svc: Services = Depends(services)
) -> Response:
    """Change a connector; credentials sent replace those of the same name (null removes one), the others
    are kept. Send ``version`` to get a 409 if it changed."""
    return reply(svc.run(conn.update_connector, who.team_id, connectorId, body, vault=svc.vault))


@router.delete(CONNECTOR, responses=documented(Doc, 200, 409))
def delete_connector(
    connectorId: str, who: Caller = Depends(admin), svc: Services = Depends(services)
) -> Response:
    """Remove a connector that no automation names; links made through it stay with their processes."""
    return reply(svc.run(conn.delete_connector, who.team_id, connectorId))


@router.get(f"{EXT}{PROCESS}/links", responses=documented(list[Doc]))
def process_links(
    procedureShortId: str, processId: str, who: Caller = Depends(caller), svc: Services = Depends(services)
) -> Response:
    """What automations made in other systems for the process: connector, object type, external id, URL,
    first and last synced."""
    return reply(svc.run(conn.process_links, who, procedureShortId, (processId,)))
