"""One family of user-facing errors: a stable code, an HTTP status and a message.

Services raise a subclass of ApplicationError when the user (not the code) must change
something; `core.http` turns any of them into a response (the DRF exception handler for the
API, the middleware for pages and htmx fragments), so views do not catch per-module errors.

This module imports nothing from Django, so the pure packages (`annotation/importers`) can
raise errors of the family too. Each app keeps its own base class (AnnotationError, ToolError,
ReviewError, JobError, ...) below ApplicationError; a subclass that also derives from one of
the kinds here (Conflict, RateLimited, ...) takes that kind's status: put the kind first,
`class LeaseExpired(Conflict, AnnotationError)`.
"""

from __future__ import annotations


class ApplicationError(Exception):
    """A request the user must change; `code` is a stable machine-readable name."""

    code = "application_error"
    status = 400
    # Seconds after which a retry may succeed: the Retry-After header, when known.
    retry_after: int | None = None

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class BadRequest(ApplicationError):
    """The input is invalid (a parameter, a file, a value out of range)."""

    code = "bad_request"
    status = 400


class Forbidden(ApplicationError):
    code = "forbidden"
    status = 403


class NotFound(ApplicationError):
    code = "not_found"
    status = 404


class Conflict(ApplicationError):
    """The request clashes with the current state (already done, taken by someone else)."""

    code = "conflict"
    status = 409


class RateLimited(ApplicationError):
    """Too many requests; `retry_after` (seconds) becomes the Retry-After header when known."""

    code = "rate_limited"
    status = 429

    def __init__(
        self, message: str = "", *, code: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class UpstreamFailed(ApplicationError):
    """A service we depend on answered badly or not at all."""

    code = "upstream_failed"
    status = 502


class Unavailable(ApplicationError):
    """The feature is switched off or its backend is not there (for now: ``retry_after``)."""

    code = "unavailable"
    status = 503

    def __init__(
        self, message: str = "", *, code: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after
