"""Procedures: the list, and a procedure's page (attributes, states and their graph, requirements,
automations)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from procession.console.auth import Session, signed_in
from procession.console.graph import state_graph
from procession.console.web import ConsoleRoute, back, call, page
from procession.domain.requirements import Requirement
from procession.services import configuration as conf

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


@router.get("/")
def home(session: Session = Depends(signed_in)) -> Response:
    return back("/procedures")


@router.get("/procedures")
async def procedures(request: Request, session: Session = Depends(signed_in)) -> Response:
    config = await call(request, conf.team_config, session.caller.team_id)
    return page(request, "procedures.html", {"procedures": config["procedures"]})


@router.get("/procedures/{short}")
async def procedure(request: Request, short: str, session: Session = Depends(signed_in)) -> Response:
    found = await call(request, conf.get_procedure, session.caller.team_id, short)
    for r in found["requirements"]:
        r["reads"] = Requirement.from_stored(r).reads
    return page(request, "procedure.html", {"p": found, "graph": state_graph(found)})


@router.get("/entities")
async def entities(request: Request, session: Session = Depends(signed_in)) -> Response:
    config = await call(request, conf.team_config, session.caller.team_id)
    return page(request, "entities.html", {"entities": config["entities"]})
