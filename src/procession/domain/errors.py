"""Every error a caller can get, in one place.

ProcessionError(code, message, field=None)
├── BadRequest      malformed input (not JSON, wrong shape)          -> 400
├── Unauthorized    no key, unknown key, revoked key                  -> 401
├── Forbidden       the key's role may not do this                    -> 403
├── NotFound        unknown id or shortId, or another team's          -> 404
├── Conflict        duplicate primary key, idempotency mismatch, ...  -> 409
├── TooLarge        request body over the limit                       -> 413
├── Invalid         values or transitions that break the rules        -> 422
│                   (carries one FieldError per offending field; ``too_complex`` for a query past a
│                   limit, ``invalid_character`` for text that is not Unicode)
├── TooManyRequests past a rate limit of the key or of its team          -> 429 (``Retry-After``)
├── Unavailable     the database did not answer in time (``statement_timeout``)  -> 503
└── StorageFull     a write refused because the disk (or the database's) is full  -> 507
The HTTP mapping lives in one table, ``procession.api.errors``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One problem with one field of the input."""

    code: str
    message: str
    field: str | None = None

    def as_dict(self) -> dict[str, str]:
        """The envelope's ``_errors`` entry."""
        out = {"code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        return out


class ProcessionError(Exception):
    """Base of every error the domain and services raise on purpose."""

    code = "error"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code

    @property
    def errors(self) -> list[FieldError]:
        """The errors to report, one per offending field."""
        return [FieldError(self.code, self.message, self.field)]


class BadRequest(ProcessionError):
    code = "bad_request"


class Unauthorized(ProcessionError):
    code = "unauthorized"


class Forbidden(ProcessionError):
    code = "forbidden"


class NotFound(ProcessionError):
    code = "not_found"


class Conflict(ProcessionError):
    code = "conflict"


class TooLarge(ProcessionError):
    code = "too_large"


class UnsupportedMediaType(ProcessionError):
    """A body sent as a media type the route does not read (JSON sent as ``text/plain``, say)."""

    code = "unsupported_media_type"


class Invalid(ProcessionError):
    """One or more values break the procedure's rules."""

    code = "invalid"

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(e.message for e in errors))
        self._errors = errors

    @classmethod
    def one(cls, code: str, message: str, field: str | None = None) -> Invalid:
        """An Invalid with a single field error."""
        return cls([FieldError(code, message, field)])

    @property
    def errors(self) -> list[FieldError]:
        return self._errors


class TooManyRequests(ProcessionError):
    """Past a rate limit (``api.limits``): retrying after ``retry_after`` seconds may succeed."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(ProcessionError):
    """The request was not done: the database did not answer in time, say. Retrying later may succeed."""

    code = "unavailable"


class StorageFull(ProcessionError):
    """A write was refused because storage is full (the disk of the SQLite file or of the uploaded files,
    PostgreSQL's ``disk_full``): nothing of it was kept. Retrying once space is freed may succeed."""

    code = "storage_full"

    def __init__(self) -> None:
        super().__init__(
            "storage is full: the write was not done (nothing of it was kept); retry once space is freed"
        )
