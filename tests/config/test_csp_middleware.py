"""The CSP middleware sends the headers django-csp would, building the settings' ones once."""

from __future__ import annotations

import csp.middleware
import pytest
from csp.decorators import csp_exempt, csp_update
from django.http import HttpResponse
from django.test import RequestFactory

from config.middleware import CSPMiddleware

HEADERS = ("Content-Security-Policy", "Content-Security-Policy-Report-Only")


def plain_view(request):
    return HttpResponse("ok")


@csp_update({"img-src": ["https://images.example"]})
def updating_view(request):
    return HttpResponse("ok")


@csp_exempt()
def exempt_view(request):
    return HttpResponse("ok")


def nonce_view(request):
    return HttpResponse(str(request.csp_nonce))  # a page that used a nonce


def headers(middleware_class, view, path="/somewhere/"):
    response = middleware_class(view)(RequestFactory().get(path))
    return tuple(response.get(name) for name in HEADERS)


@pytest.mark.smoke
@pytest.mark.parametrize("view", [plain_view, updating_view, exempt_view, nonce_view])
def test_it_sends_what_django_csp_sends(view):
    assert headers(CSPMiddleware, view) == headers(csp.middleware.CSPMiddleware, view)


def test_a_view_with_a_policy_of_its_own_keeps_it():
    plain, _ = headers(CSPMiddleware, plain_view)
    assert "default-src 'self'" in plain and "https://images.example" not in plain
    assert "https://images.example" in headers(CSPMiddleware, updating_view)[0]
    assert headers(CSPMiddleware, exempt_view) == (None, None)


def test_changed_settings_give_a_changed_header(settings):
    middleware = CSPMiddleware(plain_view)
    assert "report-uri" not in middleware(RequestFactory().get("/")).get(HEADERS[0])
    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"default-src": ["'none'"]}}
    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = {
        "DIRECTIVES": {"default-src": ["'self'"], "report-uri": "/csp-report/"}
    }
    response = middleware(RequestFactory().get("/"))
    assert response[HEADERS[0]] == "default-src 'none'"
    assert response[HEADERS[1]] == "default-src 'self'; report-uri /csp-report/"
    assert (response[HEADERS[0]], response[HEADERS[1]]) == headers(
        csp.middleware.CSPMiddleware, plain_view, "/"
    )
