"""One error tree, one mapping: domain errors and framework errors -> HTTP status and envelope."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError, IntegrityError
from starlette.exceptions import HTTPException

from procession.api.envelope import failure
from procession.domain import errors as e

log = logging.getLogger("procession.api")

STATUS: dict[type[e.ProcessionError], int] = {
    e.BadRequest: 400,
    e.Unauthorized: 401,
    e.Forbidden: 403,
    e.NotFound: 404,
    e.Conflict: 409,
    e.TooLarge: 413,
    e.Invalid: 422,
}


def _location(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts)


async def procession_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, e.ProcessionError)
    status = next(code for cls, code in STATUS.items() if isinstance(exc, cls))
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return failure(status, [err.as_dict() for err in exc.errors], headers)


async def validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(err["type"] == "json_invalid" for err in errors):
        return failure(400, [{"code": "malformed_json", "message": "the body is not valid JSON"}])
    if any(err["type"] in ("model_attributes_type", "dict_type") and len(err["loc"]) == 1 for err in errors):
        return failure(400, [{"code": "malformed_body", "message": "the body must be a JSON object"}])
    return failure(422, [_field_error(err) for err in errors])


def _field_error(err: Any) -> dict[str, Any]:
    where = _location(err["loc"])
    if err["type"] == "extra_forbidden":
        return {
            "code": "unknown_field",
            "message": f"{where} is not a field that can be written",
            "field": where,
        }
    return {"code": "invalid", "message": f"{where or 'body'}: {err['msg']}", "field": where}


async def http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return failure(
        exc.status_code, [{"code": "http_error", "message": str(exc.detail)}], dict(exc.headers or {})
    )


async def integrity_error(_: Request, exc: Exception) -> Response:
    log.info("integrity error: %s", exc)
    return failure(
        409, [{"code": "conflict", "message": "a concurrent change conflicts with this one; retry"}]
    )


async def data_error(_: Request, exc: Exception) -> Response:
    """A value the database cannot store that no check refused first (PostgreSQL: text holding the NUL
    character ``\\u0000``, in a name to look up, say): the request's own fault, refused whole; its transaction
    was rolled back, so nothing of it is kept."""
    assert isinstance(exc, DataError)
    log.info("data error: %s", exc.orig)  # not the statement: a bulk one carries whole batches
    reason = str(exc.orig).splitlines()[0] if exc.orig is not None else "refused by the database"
    detail = getattr(getattr(exc.orig, "diag", None), "message_detail", None)
    message = f"a value cannot be stored: {reason}" + (f" ({detail})" if detail else "")
    return failure(422, [{"code": "unstorable_value", "message": message}])


async def unexpected_error(_: Request, exc: Exception) -> Response:
    log.exception("unexpected error", exc_info=exc)
    return failure(500, [{"code": "internal", "message": "internal error"}])


def install(app: FastAPI) -> None:
    app.add_exception_handler(e.ProcessionError, procession_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(IntegrityError, integrity_error)
    app.add_exception_handler(DataError, data_error)
    app.add_exception_handler(Exception, unexpected_error)
