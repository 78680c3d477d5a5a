"""ApplicationError to HTTP: one DRF exception handler, one middleware for pages and htmx.

The API answers `{"detail": message, "code": code}` with the error's status (and Retry-After
for RateLimited); pages answer the message in `core/error.html`, htmx requests the fragment
`core/_error.html`, with the same status. A view that shows the error inside its own form or
panel (re-rendering what the user typed) wraps the service call in `error_into(context)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.errors import ApplicationError, RateLimited


def _headers(exc: ApplicationError) -> dict[str, str]:
    if isinstance(exc, RateLimited) and exc.retry_after is not None:
        return {"Retry-After": str(int(exc.retry_after))}
    return {}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """settings.REST_FRAMEWORK["EXCEPTION_HANDLER"]: the family first, then DRF's own."""
    if isinstance(exc, ApplicationError):
        body = {"detail": exc.message, "code": exc.code}
        return Response(body, status=exc.status, headers=_headers(exc))
    return drf_exception_handler(exc, context)


def application_error_response(request: HttpRequest, exc: ApplicationError) -> HttpResponse:
    """The page (or, for htmx, the fragment) that shows the error, with its status."""
    template = "core/_error.html" if getattr(request, "htmx", False) else "core/error.html"
    response = render(request, template, {"error": exc}, status=exc.status)
    for name, value in _headers(exc).items():
        response[name] = value
    return response


@contextmanager
def error_into(context: dict[str, Any]) -> Iterator[None]:
    """For a view that shows a service's error inside its own form or panel: an ApplicationError
    raised in the block puts its message in `context["error"]` and its status in
    `context["error_status"]`; anything else propagates."""
    try:
        yield
    except ApplicationError as error:
        context["error"] = error.message
        context["error_status"] = error.status


class ApplicationErrorMiddleware:
    """Renders an ApplicationError that a page or htmx view let through."""

    def __init__(self, get_response):  # noqa: ANN001 - Django's middleware protocol
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, ApplicationError):
            return application_error_response(request, exception)
        return None
