"""Project middleware."""

from __future__ import annotations

import http.client

import csp.middleware
from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.utils import build_policy
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

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
        request.csp_nonce = csp.middleware.CheckableLazyObject(self._csp_nonce_post_response)
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
