"""Project middleware."""

from __future__ import annotations

import http.client
from typing import Any

import csp.middleware
from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.utils import build_policy
from django import db
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.utils.deprecation import MiddlewareMixin
from django.utils.functional import SimpleLazyObject

from annotation.roles import user_roles_read_once
from core.validation import (
    DB_INT_MAX,
    DB_INT_MIN,
    UPLOAD_FORM_OVERHEAD_BYTES,
    IntegerOutOfRange,
)

# Response attributes by which django-csp's decorators give a view a policy of its own.
_OWN_POLICY_ATTRIBUTES = (
    "_csp_config",
    "_csp_update",
    "_csp_replace",
    "_csp_config_ro",
    "_csp_update_ro",
    "_csp_replace_ro",
    "_csp_exempt",
    "_csp_exempt_ro",
)


class RolesOncePerRequestMiddleware:
    """The signed-in user's roles read once per request, in one query, when first asked.

    Django loads the session's user afresh for each request, so nothing read here outlives
    the request. The user stays lazy: a request that never looks at it reads nothing.
    """

    def __init__(self, get_response):  # noqa: ANN001 - Django's middleware protocol
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        session_user = request.user
        request.user = SimpleLazyObject(lambda: _read_roles_once(session_user))  # type: ignore[assignment]
        return self.get_response(request)


def _read_roles_once(user: Any) -> Any:  # Django's lazy user, kept lazy until now
    user_roles_read_once(user)
    return user


class CSPMiddleware(csp.middleware.CSPMiddleware):
    """django-csp's middleware, building the settings' headers once, not for every response.

    django-csp turns the settings into both header strings afresh for each response (4.7% of
    a web worker's CPU in a profile under the assignment benchmark's load). A response whose
    view set no policy of its own, on a request that used no nonce, gets the strings built
    from the settings as they are (built again when the settings object changes, as in
    tests); all others go the library's way.
    """

    def __init__(self, get_response):  # noqa: ANN001 - Django's middleware protocol
        super().__init__(get_response)
        self._built_for: tuple[object, object] | None = None
        self._headers: tuple[str, str] = ("", "")

    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        policy = getattr(settings, "CONTENT_SECURITY_POLICY", None)
        policy_ro = getattr(settings, "CONTENT_SECURITY_POLICY_REPORT_ONLY", None)
        if not self._settings_policy_applies(request, response, policy, policy_ro):
            return super().process_response(request, response)
        if self._built_for != (policy, policy_ro):
            self._headers = (build_policy(), build_policy(report_only=True))
            self._built_for = (policy, policy_ro)
        header, header_ro = self._headers
        if header:
            response[HEADER] = header
        if header_ro:
            response[HEADER_REPORT_ONLY] = header_ro
        # As django-csp does once the header is written: a nonce asked for now would be unsent.
        request.csp_nonce = csp.middleware.CheckableLazyObject(  # type: ignore[attr-defined]
            self._csp_nonce_post_response  # django-csp sets this attribute on the request
        )
        return response

    @staticmethod
    def _settings_policy_applies(
        request: HttpRequest, response: HttpResponseBase, policy: object, policy_ro: object
    ) -> bool:
        if getattr(request, "_csp_nonce", None) is not None:
            return False
        if any(getattr(response, name, None) for name in _OWN_POLICY_ATTRIBUTES):
            return False
        if HEADER in response or HEADER_REPORT_ONLY in response:
            return False
        if settings.DEBUG and response.status_code in (
            http.client.INTERNAL_SERVER_ERROR,
            http.client.NOT_FOUND,
        ):
            return False
        return not any(
            isinstance(config, dict) and config.get("EXCLUDE_URL_PREFIXES")
            for config in (policy, policy_ro)
        )


RETRY_AFTER_S = 2


def error_response(request: HttpRequest, status: int, detail: str, code: str) -> HttpResponse:
    """The API's error body (`{"detail", "code"}`) for an API path or a client asking for
    JSON; plain text for a page. Also config.error_views' answer for what Django itself
    refuses before or outside a view."""
    if request.path.startswith("/api/") or "json" in request.headers.get("accept", ""):
        return JsonResponse({"detail": detail, "code": code}, status=status)
    return HttpResponse(detail, status=status, content_type="text/plain; charset=utf-8")


class UploadBoundMiddleware(MiddlewareMixin):
    """A 413 for an upload whose Content-Length is over its view's bound (``upload_max_bytes``
    in core.validation), before anything reads the body. It sits before CsrfViewMiddleware,
    whose check of a form post reads the body whole. A body without a Content-Length is read
    as empty by Django; one that lies about it is cut at the length given, and the import's
    streaming reader still counts the bytes it gets."""

    def process_view(
        self,
        request: HttpRequest,
        view_func,
        view_args,
        view_kwargs,  # noqa: ANN001
    ) -> HttpResponse | None:
        marked = getattr(view_func, "upload_max_bytes", None) or getattr(
            getattr(view_func, "view_class", None), "upload_max_bytes", None
        )
        if marked is None:
            return None
        bound, setting, advice = marked
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return None  # Django answers a malformed length itself
        limit = bound()
        if length <= limit + UPLOAD_FORM_OVERHEAD_BYTES:
            return None
        return error_response(
            request,
            413,
            f"The upload is {length:,} bytes; files of at most {limit:,} bytes are taken "
            f"here ({setting}).{' ' + advice if advice else ''}",
            "upload_too_large",
        )


class RequestFaultMiddleware(MiddlewareMixin):
    """Bad input and a lost database answer as 4xx and 503, never as 500.

    - An integer in the URL (`<int:...>`) beyond what the database stores answers 400 before
      the view runs (SQLite raises OverflowError on it, PostgreSQL a DataError).
    - A number the view passed on to the database out of its range (OverflowError, or
      PostgreSQL's "out of range" DataError) answers 400; a RecursionError (input nested too
      deep for a recursive parser) answers 400 too.
    - A lost database connection (OperationalError / InterfaceError) answers 503 with
      Retry-After; the broken connection is closed so that the next request opens a new one.
    """

    def process_view(
        self,
        request: HttpRequest,
        view_func,
        view_args,
        view_kwargs,  # noqa: ANN001
    ) -> HttpResponse | None:
        for name, value in view_kwargs.items():
            if isinstance(value, int) and not DB_INT_MIN <= value <= DB_INT_MAX:
                return error_response(
                    request, 400, f"{name} is out of range (at most {DB_INT_MAX})", "out_of_range"
                )
        return None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, db.OperationalError | db.InterfaceError):
            for connection in db.connections.all(initialized_only=True):
                # Django marks the connection after an error; a dead one is closed here.
                connection.close_if_unusable_or_obsolete()
            response = error_response(
                request,
                503,
                "The database is unavailable for a moment; please retry.",
                "database_unavailable",
            )
            response["Retry-After"] = str(RETRY_AFTER_S)
            return response
        if isinstance(exception, IntegerOutOfRange):
            return error_response(request, 400, str(exception), "out_of_range")
        if isinstance(exception, OverflowError) or (
            isinstance(exception, db.DataError) and "out of range" in str(exception)
        ):
            return error_response(
                request, 400, "A number in the request is out of range.", "out_of_range"
            )
        if isinstance(exception, RecursionError):
            return error_response(
                request, 400, "The request is nested too deeply.", "nested_too_deep"
            )
        return None
