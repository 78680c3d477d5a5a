"""Django's error views (`handler400`, `handler404`, `handler500` in config/urls.py), answering
the API's error body on its paths.

Django answers these itself, outside any DRF view: a URL under /api/ that no route matches
(a trailing slash, a misspelt name), a form or multipart body over DATA_UPLOAD_MAX_MEMORY_SIZE
(RequestDataTooBig) and an error no handler caught. Its default views answer HTML, which an
API client cannot read as it reads every other error; pages keep Django's views and our
templates.
"""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse
from django.views import defaults

from config.middleware import error_response


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


# Refusals whose message says what the client sent too much of (a host or a signature
# refused stays unexplained, as Django's own page leaves it).
_SAID_BAD_REQUESTS = (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        said = isinstance(exception, _SAID_BAD_REQUESTS)
        detail = str(exception) if said else "The request could not be read."
        return error_response(request, 400, detail, "bad_request")
    return defaults.bad_request(request, exception)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return error_response(
            request,
            404,
            f"No such API route: {request.path} (the routes are in /api/schema/).",
            "not_found",
        )
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return error_response(request, 500, "Server error.", "server_error")
    return defaults.server_error(request)
