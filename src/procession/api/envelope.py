"""The reply envelope ``{_data, _meta, _errors}`` and its OpenAPI description."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import orjson
from fastapi import Response
from pydantic import BaseModel, ConfigDict, Field

from procession.domain.text import shown
from procession.logs import REQUEST_ID

T = TypeVar("T")


class ErrorItem(BaseModel):
    code: str
    message: str
    field: str | None = None
    index: int | None = None


class Envelope(BaseModel, Generic[T]):
    model_config = ConfigDict(populate_by_name=True)

    data: T | None = Field(default=None, alias="_data")
    meta: dict[str, Any] = Field(default_factory=dict, alias="_meta")
    errors: list[ErrorItem] = Field(default_factory=list, alias="_errors")


def reply(
    data: Any, *, status: int = 200, meta: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> Response:
    """A successful reply."""
    body = orjson.dumps({"_data": data, "_meta": meta or {}, "_errors": []}, option=orjson.OPT_NON_STR_KEYS)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def failure(
    status: int,
    errors: list[dict[str, Any]],
    headers: dict[str, str] | None = None,
    *,
    meta: dict[str, Any] | None = None,
) -> Response:
    """An error reply, naming its request (``_meta.requestId``). Text it quotes from the request that UTF-8
    cannot encode is shown with U+FFFD."""
    request_id = REQUEST_ID.get()
    if request_id is not None:
        meta = {"requestId": request_id, **(meta or {})}
    envelope = {"_data": None, "_meta": meta or {}, "_errors": errors}
    try:
        body = orjson.dumps(envelope)
    except TypeError:  # a lone surrogate, say
        body = orjson.dumps(_encodable(envelope), default=str)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _encodable(value: Any) -> Any:
    if isinstance(value, str):
        return shown(value)
    if isinstance(value, dict):
        return {_encodable(k): _encodable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encodable(v) for v in value]
    return value


def documented(
    model: Any, status: int = 200, *extra: int, links: dict[str, dict[str, Any]] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for a route: its success envelope (with the ``links`` from it to the operations
    its reply's ids lead to) and the error envelopes it can give."""
    out: dict[int | str, dict[str, Any]] = {status: {"model": Envelope[model]}}
    if links:
        out[status]["links"] = links
    for code in (400, 401, 403, 404, 413, 415, 422, 503, *extra):
        out[code] = {"model": Envelope[None], "description": ERROR_DESCRIPTIONS[code]}
    return out


def link(method: str, path: str, **parameters: str) -> dict[str, Any]:
    """An OpenAPI link to the operation ``method path``, its parameters given by runtime expressions
    (``$response.body#/_data/id``, ``$request.path.procedureShortId``; a header's name prefixed ``header.``):
    how a client, or a stateful fuzzer, goes from a reply to the calls on what it made. It names the operation
    by its path (``operationRef``), which the document has whatever the operations' generated ids."""
    pointer = path.replace("~", "~0").replace("/", "~1").replace("{", "%7B").replace("}", "%7D")
    return {"operationRef": f"#/paths/{pointer}/{method.lower()}", "parameters": parameters}


DATA_ID = "$response.body#/_data/id"  # the id of what the reply holds


ERROR_DESCRIPTIONS = {
    400: "Malformed request (not JSON, wrong shape)",
    401: "Missing, unknown or revoked API key",
    403: "The key's role may not do this",
    404: "Not found (also another team's ids)",
    409: "Conflict: duplicate primary key, idempotency mismatch, stale version",
    413: "Request body too large",
    415: "The body is not of the media type the route reads (JSON: application/json, or none said; an upload: "
    "multipart/form-data)",
    422: "A value or transition that breaks the procedure's rules; text UTF-8 cannot encode "
    "(invalid_character); a query past a limit (too_complex)",
    503: "A statement ran past the request's deadline (statement_timeout): retry later",
}
