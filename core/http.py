"""ApplicationError to HTTP: one DRF exception handler, one middleware for pages and htmx.

The API answers `{"detail": message, "code": code}` with the error's status (and Retry-After
when the error knows it: RateLimited, Unavailable); pages answer the message in
`core/error.html`, htmx requests the fragment `core/_error.html`, with the same status. A view
that shows the error inside its own form or panel (re-rendering what the user typed) wraps the
service call in `error_into(context)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.errors import ApplicationError


def _headers(exc: ApplicationError) -> dict[str, str]:
    if exc.retry_after is not None:
        return {"Retry-After": str(int(exc.retry_after))}
    return {}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """settings.REST_FRAMEWORK["EXCEPTION_HANDLER"]: the family first, then DRF's own.

    DRF answers its own errors (401, 403, 404, 405, 406, 413 from the JSON parser, 415, 429,
    a parse error's 400) as `{"detail": message}`; they get the family's `code` beside it
    (DRF's code for the error: `not_authenticated`, `method_not_allowed`, ...), so that a
    client reads every error the same way. A serializer's field errors keep DRF's
    `{field: [...]}`, which names each field."""
    if isinstance(exc, ApplicationError):
        body = {"detail": exc.message, "code": exc.code}
        return Response(body, status=exc.status, headers=_headers(exc))
    response = drf_exception_handler(exc, context)
    if (
        response is not None
        and not isinstance(exc, exceptions.ValidationError)
        and isinstance(response.data, dict)
        and set(response.data) == {"detail"}
    ):
        response.data["code"] = _drf_error_code(exc)
    return response


def _drf_error_code(exc: Exception) -> str:
    # DRF's handler turns Django's Http404 and PermissionDenied into its own errors first.
    if isinstance(exc, Http404):
        return exceptions.NotFound.default_code
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied.default_code
    codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
    return codes if isinstance(codes, str) else "error"


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
