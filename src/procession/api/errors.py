"""One error tree, one mapping: domain errors and framework errors -> HTTP status and envelope."""

from __future__ import annotations

import logging
import traceback
import uuid
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException

from procession.api.envelope import failure
from procession.domain import errors as e
from procession.logs import REQUEST_ID
from procession.store.db import storage_full, timed_out

log = logging.getLogger("procession.api")

STATUS: dict[type[e.ProcessionError], int] = {
    e.BadRequest: 400,
    e.Unauthorized: 401,
    e.Forbidden: 403,
    e.NotFound: 404,
    e.Conflict: 409,
    e.TooLarge: 413,
    e.UnsupportedMediaType: 415,
    e.Invalid: 422,
    e.TooManyRequests: 429,
    e.Unavailable: 503,
    e.StorageFull: 507,
}


def _location(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts)


async def procession_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, e.ProcessionError)
    return answer(exc)


def answer(exc: e.ProcessionError) -> Response:
    """The envelope and status (``STATUS``) of an error raised on purpose."""
    status = next(code for cls, code in STATUS.items() if isinstance(exc, cls))
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, e.TooManyRequests):
        headers = {"Retry-After": str(exc.retry_after)}
    return failure(status, [err.as_dict() for err in exc.errors], headers)


async def validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(err["type"] == "json_invalid" for err in errors):
        return failure(400, [{"code": "malformed_json", "message": "the body is not valid JSON"}])
    if any(err["type"] in ("model_attributes_type", "dict_type") and len(err["loc"]) == 1 for err in errors):
        return failure(400, [{"code": "malformed_body", "message": "the body must be a JSON object"}])
    if any(err["type"] == "missing" and tuple(err["loc"]) == ("body",) for err in errors):  # names no field
        return failure(400, [{"code": "malformed_body", "message": "the body is empty: send a JSON object"}])
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


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code, message, cause = "http_error", str(exc.detail), exc.__cause__
    if exc.status_code == 400 and isinstance(cause, e.ProcessionError):
        return await procession_error(request, cause)  # FastAPI's "error parsing the body": the body limit
    if exc.status_code == 400 and isinstance(cause, ValueError | RecursionError):
        # the same: bytes that are not UTF-8, nesting past the decoder's depth
        code, message = "malformed_json", f"the body is not valid JSON: {_short(cause)}"
    return failure(exc.status_code, [{"code": code, "message": message}], dict(exc.headers or {}))


async def integrity_error(_: Request, exc: Exception) -> Response:
    log.info("integrity error: %s", _described(exc))
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


async def operational_error(request: Request, exc: Exception) -> Response:
    """A statement stopped at the request's deadline (``Settings.statement_timeout_ms``): a 503 naming it;
    any other operational failure is unexpected."""
    if not timed_out(exc):
        return unexpected(request.scope, exc)
    limit = request.app.state.services.settings.statement_timeout_ms
    log.info("statement timeout: %s %s", request.method, request.url.path)
    unavailable = e.Unavailable(
        f"a statement ran past the {limit:,} ms deadline (PROCESSION_STATEMENT_TIMEOUT_MS) and was "
        "stopped: narrow the query, or retry later",
        code="statement_timeout",
    )
    return await procession_error(request, unavailable)


async def database_error(request: Request, exc: Exception) -> Response:
    return unexpected(request.scope, exc)


def unexpected(scope: Any, exc: BaseException) -> Response:
    """The reply to an exception no handler answered on purpose: a write refused for lack of storage (the
    database's or the files' disk, ``db.storage_full``) is a 507 ``StorageFull``; anything else a 500 with a
    request id, logged on one line with the exception's type, message (short, without any statement or
    parameters) and where it was raised; the request's id is in the envelope, the reply's header and the line."""
    if storage_full(exc):
        log.warning("storage full (%s %s): %s", scope.get("method"), scope.get("path"), _described(exc))
        return answer(e.StorageFull())
    request_id = REQUEST_ID.get() or uuid.uuid4().hex[:16]  # ``observe.Observe``'s, which sends it back
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    log.error(
        "unexpected error, request %s (%s %s): %s%s",
        request_id,
        scope.get("method"),
        scope.get("path"),
        _described(exc),
        where,
    )
    body = [{"code": "internal", "message": f"internal error (request {request_id})"}]
    return failure(500, body, meta={"requestId": request_id})


LOGGED_CHARS = 500  # of an exception's message in the log


def _described(exc: BaseException) -> str:
    """``Type: message``, on one line and short: a database error's own message, never its statement nor
    its parameters (SQLAlchemy's text holds both: a bulk statement's are whole batches)."""
    shown: Any = exc
    while isinstance(shown, DBAPIError) and shown.orig is not None:  # the driver's error, not SQLAlchemy's
        shown = shown.orig
    if shown is exc:
        return f"{type(exc).__name__}: {_short(exc)}"
    first_line = (str(shown).splitlines() or [""])[0]  # PostgreSQL's next lines quote the statement
    return f"{type(exc).__name__} ({type(shown).__name__}): {_short(first_line)}"


def _short(exc: BaseException | str) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= LOGGED_CHARS else text[:LOGGED_CHARS] + "…"


def install(app: FastAPI) -> None:
    """Handlers by exception class; what none takes (any other exception) is ``unexpected``, answered by
    ``app.Guard`` (not Starlette's server-error middleware, which raises it again to the server: it would
    log it whole and close the connection)."""
    app.add_exception_handler(e.ProcessionError, procession_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(IntegrityError, integrity_error)
    app.add_exception_handler(DataError, data_error)
    app.add_exception_handler(OperationalError, operational_error)
    app.add_exception_handler(DBAPIError, database_error)
