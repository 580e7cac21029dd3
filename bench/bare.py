"""A bare endpoint for ``create.py``: the Create Process route's body model and envelope, no database.

Run as ``python bench/bare.py --port P``; served like ``procession serve`` (uvicorn, one process,
log level warning, no access log), so the gap to the real route is the engine's own work.
"""

from __future__ import annotations

import argparse
import uuid

import orjson
import uvicorn
from fastapi import FastAPI, Response

from procession.services.commands import CreateProcess

app = FastAPI(title="bare")


@app.post("/v1/ext/procedure/{procedureShortId}/process", status_code=201)
async def create(procedureShortId: str, body: CreateProcess) -> Response:
    """Validate the body like the real route (also async, on the event loop), answer a small envelope."""
    data = {"id": str(uuid.uuid4()), "procedure": procedureShortId, "status": body.status}
    envelope = {"_data": data, "_meta": {}, "_errors": []}
    return Response(orjson.dumps(envelope), status_code=201, media_type="application/json")


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
