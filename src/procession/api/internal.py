"""The internal read API, ``/v1/internal``: process data keyed by attribute ids, states by id."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from procession.api.deps import caller, services
from procession.api.envelope import documented, reply
from procession.api.schemas import ProcessOut
from procession.bootstrap import Services
from procession.services.commands import ListProcesses
from procession.services.common import Caller
from procession.services.reads import get_process_by_id, list_processes

router = APIRouter(prefix="/v1/internal", tags=["internal"])


@router.get("/process/{processId}", responses=documented(ProcessOut))
def read(processId: str, who: Caller = Depends(caller), svc: Services = Depends(services)) -> Response:
    """One process, data as ``attribute id: value``."""
    return reply(svc.run(get_process_by_id, who, processId))


@router.post("/procedure/{procedureId}/process/list", responses=documented(list[ProcessOut]))
def search(
    procedureId: str, body: ListProcesses, who: Caller = Depends(caller), svc: Services = Depends(services)
) -> Response:
    """List and search as in ``/v1/ext``; ``where`` and ``sort`` also take attribute ids."""
    page, meta = svc.run(list_processes, who, procedureId, body, external=False, cursor_key=svc.cursor_key)
    return reply(page, meta=meta)
